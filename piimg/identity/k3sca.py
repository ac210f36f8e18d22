"""The k3s cluster's certificate authorities, made on the host before first boot.

k3s skips generating its CAs when it finds them in
``/var/lib/rancher/k3s/server/tls`` at first start ("Using Custom CA
Certificates", k3s-io/docs@01f91e0b:docs/cli/certificate.md). The files it
requires there::

    server-ca.crt server-ca.key client-ca.crt client-ca.key
    request-header-ca.crt request-header-ca.key
    etcd/peer-ca.crt etcd/peer-ca.key etcd/server-ca.crt etcd/server-ca.key
    service.key        (service-account signing key, no certificate)

We follow the topology of k3s's example generator
(k3s-io/k3s@54719a84:contrib/util/generate-custom-ca-certs.sh): one root CA
whose key never leaves the host, and below it one EC P-256 CA per purpose,
each ``.crt`` a bundle of the leaf CA followed by the root. The example puts an
intermediate CA between them; it buys nothing here (the host keeps both keys),
so piimg signs the purpose CAs with the root directly.

Because the server CA bundle holds more than one certificate, k3s's join
token hash is the SHA-256 of the root certificate's DER
(``hashCA`` in k3s-io/k3s@0566d457:pkg/clientaccess/token.go), so agents
started with ``K10<hash>::server:<secret>`` verify the server they join
before they send the secret (docs.k3s.io "k3s token", secure format).

Knowing the client CA's key also lets piimg mint an admin client certificate
(group ``system:masters``) on the host: a kubeconfig without any SSH.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The purpose CAs, by their path below k3s's tls folder (without .crt/.key).
PURPOSE_CAS: Final = ("server-ca", "client-ca", "request-header-ca", "etcd/peer-ca", "etcd/server-ca")
SERVICE_KEY: Final = "service.key"
ROOT_CERT: Final = "root-ca.crt"
ROOT_KEY: Final = "root-ca.key"
#: Where k3s looks for them on a server.
K3S_TLS_DIR: Final = "/var/lib/rancher/k3s/server/tls"
#: Validity as in the example generator: 7300 days root, 3700 days leaf CAs.
ROOT_DAYS: Final = 7300
CA_DAYS: Final = 3700
#: Client certificates: 365 days, like the ones k3s issues itself.
CLIENT_DAYS: Final = 365
#: k3s's token prefix (``tokenPrefix`` in pkg/clientaccess/token.go).
TOKEN_PREFIX: Final = "K10"
ADMIN_GROUP: Final = "system:masters"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    # "EC PRIVATE KEY" / "RSA PRIVATE KEY": what openssl ecparam/genrsa -traditional write in the example.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, *, ca: bool, days: int, now: dt.datetime,
) -> x509.CertificateBuilder:
    """What every certificate here has: names, key, serial, validity, and the basic
    constraints and key usage of a CA (signs certificates) or of a leaf (signs only)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a node clock a little behind still accepts it
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=ca,
                          data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    )


def _ca_cert(
    name: str, key: ec.EllipticCurvePrivateKey, *, issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey, days: int, now: dt.datetime,
) -> x509.Certificate:
    """A CA certificate with the example generator's ``v3_ca`` extensions."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki_source = issuer_key.public_key()
    return (
        _builder(subject, issuer.subject if issuer is not None else subject, key, ca=True, days=days, now=now)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_source), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass(frozen=True)
class ClusterCA:
    """The root CA (host only) and the files a k3s server needs in its tls folder."""

    root_cert_pem: bytes
    root_key_pem: bytes
    #: path below K3S_TLS_DIR -> content: every PURPOSE_CAS .crt/.key and service.key
    server_files: dict[str, bytes]

    @property
    def server_ca_bundle(self) -> bytes:
        """What k3s serves at ``/cacerts`` and what a kubeconfig pins: server CA + root."""
        return self.server_files["server-ca.crt"]

    def ca_hash(self) -> str:
        """k3s's CA hash of the server CA bundle (hex SHA-256; see the module docstring)."""
        return ca_hash(self.server_ca_bundle)

    def join_token(self, secret: str) -> str:
        """The secure token: ``K10<ca hash>::server:<secret>`` (the form k3s's ``String()`` writes)."""
        return f"{TOKEN_PREFIX}{self.ca_hash()}::server:{secret}"

    def signer(self, purpose: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificates(self.server_files[f"{purpose}.crt"])[0]
        key = serialization.load_pem_private_key(self.server_files[f"{purpose}.key"], password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{purpose}.key is not an EC key")
        return cert, key

    def mint_client(self, common_name: str, groups: Iterable[str] = (ADMIN_GROUP,), *,
                    days: int = CLIENT_DAYS) -> tuple[bytes, bytes]:
        """A client certificate (PEM, with the client CA appended) and its key, signed by the client CA.

        The apiserver maps CN to the user name and O to groups; ``system:masters``
        is the group k3s's own admin kubeconfig carries.
        """
        name = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        return self._mint_leaf("client-ca", name, ExtendedKeyUsageOID.CLIENT_AUTH, days=days, authority_key_id=True)

    def mint_server(self, common_name: str, *, ips: Iterable[str] = (), dns: Iterable[str] = (),
                    days: int = CLIENT_DAYS) -> tuple[bytes, bytes]:
        """A serving certificate signed by the server CA (tests stand in for k3s's apiserver with it)."""
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._mint_leaf("server-ca", name, ExtendedKeyUsageOID.SERVER_AUTH, days=days, sans=sans)

    def _mint_leaf(self, purpose: str, name: x509.Name, usage: x509.ObjectIdentifier, *, days: int,
                   sans: list[x509.GeneralName] | None = None, authority_key_id: bool = False) -> tuple[bytes, bytes]:
        """A leaf certificate for one extended key usage, signed by the ``purpose`` CA: (PEM + CA, key PEM)."""
        ca_cert, ca_key = self.signer(purpose)
        key = _ec_key()
        builder = _builder(name, ca_cert.subject, key, ca=False, days=days, now=_now()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False)
        if sans is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if authority_key_id:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _cert_pem(cert) + _cert_pem(ca_cert), _key_pem(key)


def generate() -> ClusterCA:
    """A new root CA, the five purpose CAs below it, and a service-account key."""
    now = _now()
    stamp = int(now.timestamp())
    root_key = _ec_key()
    root = _ca_cert(f"k3s-root-ca@{stamp}", root_key, issuer=None, issuer_key=root_key, days=ROOT_DAYS, now=now)
    root_pem = _cert_pem(root)
    files: dict[str, bytes] = {}
    for purpose in PURPOSE_CAS:
        # CN as the example generator names them: k3s-server-ca@<time>, k3s-etcd-peer-ca@<time>, ...
        key = _ec_key()
        cert = _ca_cert(f"k3s-{purpose.replace('/', '-')}@{stamp}", key, issuer=root, issuer_key=root_key,
                        days=CA_DAYS, now=now)
        files[f"{purpose}.crt"] = _cert_pem(cert) + root_pem
        files[f"{purpose}.key"] = _key_pem(key)
    # kube-apiserver and the controller manager both read it; RSA 2048 as k3s and the example make it.
    files[SERVICE_KEY] = _key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return ClusterCA(root_cert_pem=root_pem, root_key_pem=_key_pem(root_key), server_files=files)


def ca_hash(bundle: bytes) -> str:
    """k3s's ``hashCA``: one certificate -> SHA-256 of the bytes as stored; several -> of the root's DER.

    The root is the last certificate of the first certificate's chain; piimg's
    bundles are always ``leaf CA, root``, verified here rather than assumed.
    """
    certs = x509.load_pem_x509_certificates(bundle)
    if len(certs) <= 1:
        return hashlib.sha256(bundle).hexdigest()
    current = certs[0]
    by_subject = {c.subject.public_bytes(): c for c in certs[1:]}
    for _ in range(len(certs)):
        issuer = by_subject.get(current.issuer.public_bytes())
        if issuer is None or issuer is current:
            break
        current.verify_directly_issued_by(issuer)
        current = issuer
    return hashlib.sha256(current.public_bytes(serialization.Encoding.DER)).hexdigest()


def load(root_cert_pem: bytes, root_key_pem: bytes, server_files: dict[str, bytes]) -> ClusterCA:
    """Check what was read back from disk: every file present and each CA signed by the root."""
    missing = [n for p in PURPOSE_CAS for n in (f"{p}.crt", f"{p}.key") if n not in server_files]
    if SERVICE_KEY not in server_files:
        missing.append(SERVICE_KEY)
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    root = x509.load_pem_x509_certificate(root_cert_pem)
    serialization.load_pem_private_key(root_key_pem, password=None)
    for purpose in PURPOSE_CAS:
        chain = x509.load_pem_x509_certificates(server_files[f"{purpose}.crt"])
        chain[0].verify_directly_issued_by(root)
        key = serialization.load_pem_private_key(server_files[f"{purpose}.key"], password=None)
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
                chain[0].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError(f"{purpose}.key does not belong to {purpose}.crt")
    return ClusterCA(root_cert_pem=root_cert_pem, root_key_pem=root_key_pem, server_files=dict(server_files))
