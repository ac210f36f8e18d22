"""The cluster identity made on the host: k3s CAs, join token, client certs, SSH host keys.

Checked with an implementation other than the one that made them: ``openssl``
(verify, x509) and k3s's token rules re-implemented from its source
(tests/k3s_token.py). The required CA file list is k3s's documented one:
k3s-io/docs@01f91e0b23836f8ed7a26e2afd6d55c6b189bf36:docs/cli/certificate.md
("Custom Certificate Authority files must be placed in
/var/lib/rancher/k3s/server/tls. The following files are required: ...").
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from piimg.errors import FileError
from piimg.identity import hostkeys, k3sca, store
from piimg.identity.store import NodeName
from tests.k3s_token import hash_ca, parse_token

#: docs/cli/certificate.md, "The following files are required"
K3S_REQUIRED = [
    "server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key",
    "request-header-ca.crt", "request-header-ca.key",
    "etcd/peer-ca.crt", "etcd/peer-ca.key", "etcd/server-ca.crt", "etcd/server-ca.key",
    "service.key",
]
NODES = [NodeName("k8s-master", "10.0.2.10"), NodeName("k8s-worker1", "10.0.2.11")]


@pytest.fixture(scope="module")
def ca() -> k3sca.ClusterCA:
    return k3sca.generate()


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def test_every_documented_file_and_nothing_of_the_root_key(ca: k3sca.ClusterCA) -> None:
    assert sorted(ca.server_files) == sorted(K3S_REQUIRED)
    # the root key stays on the host: no node file holds it
    assert all(ca.root_key_pem not in data for data in ca.server_files.values())


@pytest.mark.parametrize("purpose", ["server-ca", "client-ca", "request-header-ca", "etcd/peer-ca", "etcd/server-ca"])
def test_each_ca_chains_to_the_root_with_ca_key_usage(ca: k3sca.ClusterCA, purpose: str, tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_cert_pem)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.server_files[f"{purpose}.crt"])
    # openssl verifies the first certificate of the file against the root
    r = _openssl("verify", "-x509_strict", "-CAfile", str(root), str(bundle))
    assert r.returncode == 0 and ": OK" in r.stdout, r.stderr
    text = _openssl("x509", "-noout", "-text", "-in", str(bundle)).stdout
    assert "CA:TRUE" in text and "Certificate Sign" in text
    leaf = x509.load_pem_x509_certificates(ca.server_files[f"{purpose}.crt"])[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    key = load_pem_private_key(ca.server_files[f"{purpose}.key"], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == leaf.public_key()
    # the key file is traditional PEM, as the example generator's openssl ecparam writes it
    assert ca.server_files[f"{purpose}.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")


def test_every_certificate_starts_five_minutes_back_and_only_cas_sign(ca: k3sca.ClusterCA) -> None:
    """A Pi whose clock is a little behind the host's still accepts them; a leaf cannot sign certificates."""
    leaves = [ca.mint_client("piimg-admin")[0], ca.mint_server("kube-apiserver", ips=["127.0.0.1"])[0]]
    for pem, days, is_ca in ((ca.root_cert_pem, k3sca.ROOT_DAYS, True), (ca.server_files["client-ca.crt"], k3sca.CA_DAYS, True),
                             *((leaf, k3sca.CLIENT_DAYS, False) for leaf in leaves)):
        cert = x509.load_pem_x509_certificates(pem)[0]
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=days, minutes=5)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert (usage.digital_signature, usage.key_cert_sign, usage.key_encipherment) == (True, is_ca, is_ca)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is is_ca


def test_service_account_key_is_rsa(ca: k3sca.ClusterCA) -> None:
    key = load_pem_private_key(ca.server_files["service.key"], None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048


def test_join_token_is_k3s_secure_format(ca: k3sca.ClusterCA) -> None:
    token = ca.join_token("0123abcd" * 8)
    parsed = parse_token(token)
    assert parsed.username == "server" and parsed.password == "0123abcd" * 8
    # k3s's hashCA over the bundle (root DER for several certificates), computed independently
    assert parsed.ca_hash == hash_ca(ca.server_ca_bundle) == ca.ca_hash()
    # = the root's SHA-256 fingerprint, as the k3s docs describe it for custom CAs
    r = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=ca.root_cert_pem,
                       capture_output=True)
    assert parsed.ca_hash == r.stdout.decode().strip().split("=")[1].replace(":", "").lower()
    # a single self-signed certificate hashes as the literal file (k3s's default CAs)
    single = ca.root_cert_pem
    assert hash_ca(single) == k3sca.ca_hash(single)


@pytest.mark.parametrize("bad", ["", "K10::", "K10XX::x:y", "K10::x"])
def test_reference_parser_rejects_what_k3s_rejects(bad: str) -> None:
    """The token cases of k3s's own Test_UnitInvalidTokens (pkg/clientaccess/token_test.go)."""
    with pytest.raises(ValueError):
        parse_token(bad)


def test_admin_client_certificate(ca: k3sca.ClusterCA, tmp_path: Path) -> None:
    cert_pem, key_pem = ca.mint_client("piimg-admin")
    (tmp_path / "client.pem").write_bytes(cert_pem)
    (tmp_path / "client-ca.pem").write_bytes(ca.server_files["client-ca.crt"])
    r = _openssl("verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "client-ca.pem"), str(tmp_path / "client.pem"))
    assert r.returncode == 0, r.stderr + r.stdout
    # not acceptable as a server certificate
    r = _openssl("verify", "-purpose", "sslserver", "-CAfile", str(tmp_path / "client-ca.pem"), str(tmp_path / "client.pem"))
    assert r.returncode != 0
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "piimg-admin"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = load_pem_private_key(key_pem, None)
    assert key.public_key() == cert.public_key()
    # signed by the client CA, not by the server CA
    server_ca = x509.load_pem_x509_certificates(ca.server_files["server-ca.crt"])[0]
    with pytest.raises((ValueError, InvalidSignature)):
        cert.verify_directly_issued_by(server_ca)


def test_server_cert_sans_verify(ca: k3sca.ClusterCA, tmp_path: Path) -> None:
    cert_pem, _ = ca.mint_server("kube-apiserver", ips=["10.0.2.10", "127.0.0.1"], dns=["kubernetes"])
    (tmp_path / "s.pem").write_bytes(cert_pem)
    (tmp_path / "ca.pem").write_bytes(ca.server_ca_bundle)
    assert _openssl("verify", "-purpose", "sslserver", "-verify_ip", "10.0.2.10", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "s.pem")).returncode == 0
    assert _openssl("verify", "-purpose", "sslserver", "-verify_ip", "10.0.2.99", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "s.pem")).returncode != 0


def test_ssh_host_key_is_what_ssh_keygen_reads(tmp_path: Path) -> None:
    key = hostkeys.generate("k8s-master")
    path = tmp_path / "k"
    path.write_bytes(key.private_openssh)
    path.chmod(0o600)
    r = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == key.public_key.split()
    assert key.public_key.startswith("ssh-ed25519 ")


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_store_made_once_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / ".piimg"
    first = store.load_or_create(state, NODES)
    for name, mode in _modes(state).items():
        assert mode == (0o700 if (state / name).is_dir() else 0o600), name
    again = store.load_or_create(state, NODES)
    assert again.ca == first.ca and again.nodes == first.nodes
    # a node added later gets its own key; the others keep theirs
    third = store.load_or_create(state, [*NODES, NodeName("k8s-worker2", "10.0.2.12")])
    assert third.nodes["k8s-master"] == first.nodes["k8s-master"]
    assert third.ca == first.ca
    lines = [ln for ln in (state / "known_hosts").read_text().splitlines() if not ln.startswith("#")]
    assert lines == [f"{n.address},{n.hostname} {third.nodes[n.hostname].host_key.public_key}"
                     for n in [*NODES, NodeName("k8s-worker2", "10.0.2.12")]]
    passwords = {n.node_password for n in third.nodes.values()}
    assert len(passwords) == 3 and all(len(p) == 32 and int(p, 16) >= 0 for p in passwords)


def test_store_refuses_a_readable_key(tmp_path: Path) -> None:
    state = tmp_path / ".piimg"
    store.load_or_create(state, NODES)
    key = state / "ssh" / "k8s-master" / "ssh_host_ed25519_key"
    os.chmod(key, 0o644)
    with pytest.raises(FileError, match="readable by other users"):
        store.load_or_create(state, NODES)


def test_store_refuses_an_incomplete_ca(tmp_path: Path) -> None:
    state = tmp_path / ".piimg"
    store.load_or_create(state, NODES)
    (state / "k3s-ca" / "etcd" / "peer-ca.key").unlink()
    with pytest.raises(FileError, match=r"incomplete cluster CA \(missing etcd/peer-ca.key\)"):
        store.load_or_create(state, NODES)
