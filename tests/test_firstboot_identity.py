"""First boot puts the host-made identity in place before k3s first starts.

The fake root stands in for the Pi; the stand-in k3s install script records
which CA files and which node password existed when it ran (k3s reads them
only at first start: k3s-io/docs@01f91e0b:docs/cli/certificate.md, "If CA
certificates and keys are found the correct location during initial startup
of the first server ..."; k3s-io/k3s@001a6d94:pkg/agent/config/config.go
``ensureNodePassword`` reads /etc/rancher/node/password when it exists).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from piimg.firstboot.identity import HOST_KEY_SECRET, NODE_PASSWORD_SECRET, TLS_SECRET_PREFIX
from piimg.identity import store
from piimg.identity.store import NodeName
from tests.firstboot.fakepi import FakePi, K3sServer

pytestmark = pytest.mark.integration

TLS = "var/lib/rancher/k3s/server/tls"


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> store.Identity:
    return store.load_or_create(tmp_path_factory.mktemp("id") / ".piimg",
                                [NodeName("k8s-master", "10.0.2.10"), NodeName("k8s-worker1", "10.0.2.11")])


@pytest.fixture()
def k3s_server() -> Iterator[K3sServer]:
    srv = K3sServer()
    yield srv
    srv.close()


def _pi(tmp_path: Path, server: K3sServer, identity: store.Identity, role: str) -> FakePi:
    pi = FakePi(tmp_path, server, role)
    me = identity.node(pi.config.hostname)
    secrets = dict(pi.config.secrets)
    secrets[HOST_KEY_SECRET] = me.host_key.private_openssh.decode()
    secrets[NODE_PASSWORD_SECRET] = me.node_password
    if role == "server":
        secrets.update({TLS_SECRET_PREFIX + k: v.decode() for k, v in identity.ca.server_files.items()})
    pi.config = replace(pi.config, secrets=secrets, ssh_host_public_key=me.host_key.public_line)
    (pi.boot / "piimg" / "node.json").write_text(pi.config.to_json())
    # what the image had before: keys made at boot 1 and Pi OS's regeneration enabled
    pi.write("etc/ssh/ssh_host_rsa_key", "old rsa\n")
    pi.write("etc/ssh/ssh_host_ed25519_key", "old ed25519\n")
    pi.write("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAold root@raspberrypi\n")
    wants = pi.root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "regenerate_ssh_host_keys.service").symlink_to("/lib/systemd/system/regenerate_ssh_host_keys.service")
    return pi


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_identity_in_place_before_k3s(tmp_path: Path, k3s_server: K3sServer, identity: store.Identity) -> None:
    pi = _pi(tmp_path, k3s_server, identity, "server")
    me = identity.node("k8s-master")
    # a cloud-init seed as piimg renders it (the block between the markers: tests/test_build_units.py)
    key_lines = "".join(f"    {ln}\n" for ln in me.host_key.private_openssh.decode().splitlines())
    pi.write("boot/firmware/user-data", "#cloud-config\nhostname: k8s-master\n# piimg:ssh-host-key:begin\n"
             f"ssh_keys:\n  ed25519_private: |\n{key_lines}# piimg:ssh-host-key:end\nruncmd: []\n")
    r = pi.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (pi.boot / "user-data").read_text() == "#cloud-config\nhostname: k8s-master\nruncmd: []\n"
    # SSH: only the known key, private 0600, the regeneration service disabled, sshd restarted
    assert (pi.root / "etc/ssh/ssh_host_ed25519_key").read_bytes() == me.host_key.private_openssh
    assert _mode(pi.root / "etc/ssh/ssh_host_ed25519_key") == 0o600
    assert (pi.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2] == me.host_key.public_key.split()
    assert not (pi.root / "etc/ssh/ssh_host_rsa_key").exists()
    assert not (pi.root / "etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service").is_symlink()
    assert ["systemctl", "try-restart", "ssh.service"] in [c["argv"] for c in pi.calls()]
    # node password and CA files: there when the install script ran
    standin = pi.root / "standin"
    assert (standin / "node-password.1").read_text() == me.node_password + "\n"
    assert sorted((standin / "tls.1").read_text().split()) == sorted(f"./{n}" for n in identity.ca.server_files)
    for name, data in identity.ca.server_files.items():
        assert (pi.root / TLS / name).read_bytes() == data
        assert _mode(pi.root / TLS / name) == 0o600
    assert _mode(pi.root / TLS) == 0o700
    assert _mode(pi.root / "etc/rancher/node/password") == 0o600
    # and none of it left on the boot partition
    boot_text = "".join(p.read_text(errors="replace") for p in pi.boot.rglob("*") if p.is_file())
    assert "PRIVATE KEY" not in boot_text and me.node_password not in boot_text


def test_agent_gets_no_ca(tmp_path: Path, k3s_server: K3sServer, identity: store.Identity) -> None:
    pi = _pi(tmp_path, k3s_server, identity, "agent")
    r = pi.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (pi.root / TLS).exists()
    assert (pi.root / "standin" / "node-password.1").read_text() == identity.node("k8s-worker1").node_password + "\n"


def test_a_different_ca_already_there_is_refused(tmp_path: Path, k3s_server: K3sServer, identity: store.Identity) -> None:
    pi = _pi(tmp_path, k3s_server, identity, "server")
    pi.write(f"{TLS}/server-ca.crt", "-----BEGIN CERTIFICATE-----\nk3s made its own\n-----END CERTIFICATE-----\n")
    r = pi.run()
    assert r.returncode == 1
    status = pi.status()
    assert status["steps"]["identity"]["state"] == "failed"
    assert "server-ca.crt differs from the cluster CA piimg generated" in status["error"]
    assert not (pi.root / "standin").exists()  # k3s never installed over it


def test_rerun_keeps_everything(tmp_path: Path, k3s_server: K3sServer, identity: store.Identity) -> None:
    pi = _pi(tmp_path, k3s_server, identity, "server")
    assert pi.run().returncode == 0
    before = {p: p.read_bytes() for p in (pi.root / TLS).rglob("*") if p.is_file()}
    assert pi.run().returncode == 0
    assert before == {p: p.read_bytes() for p in (pi.root / TLS).rglob("*") if p.is_file()}
