"""First boot end to end against a fake root, a recording runner and a loopback server.

Every run is a child process started like the unit starts it (``-I``, the
payload copied to /opt/piimg), so kills are real SIGKILLs.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.firstboot.fakepi import BGP_PASSWORD, TOKEN, VERSION, FakePi, K3sServer, kube

pytestmark = pytest.mark.integration

SERVER_STEPS = ["hostname", "address", "network", "cgroup", "k3s", "cluster", "scrub", "finish"]
AGENT_STEPS = ["hostname", "address", "network", "cgroup", "k3s", "scrub", "finish"]


@pytest.fixture()
def k3s_server() -> Iterator[K3sServer]:
    srv = K3sServer()
    yield srv
    srv.close()


@pytest.fixture()
def pi(tmp_path: Path, k3s_server: K3sServer) -> FakePi:
    return FakePi(tmp_path, k3s_server)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def all_text_under(path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


def assert_done(pi: FakePi, steps: list[str]) -> dict:
    status = pi.status()
    assert status["state"] == "done", status
    assert status["error"] is None
    assert list(status["steps"]) == steps
    assert all(s["state"] == "done" for s in status["steps"].values()), status["steps"]
    return status


def assert_secrets_kept_safe(pi: FakePi) -> None:
    # Not on the boot partition (status, log, node.json, manifests) ...
    boot_text = all_text_under(pi.boot)
    assert TOKEN not in boot_text and BGP_PASSWORD not in boot_text
    assert not (pi.boot / "piimg" / "manifests").exists()
    scrubbed = json.loads((pi.boot / "piimg" / "node.json").read_text())
    assert scrubbed["secrets"] == {} and scrubbed["k3s"]["config_yaml"] == ""
    assert scrubbed["hostname"] == pi.config.hostname  # still useful to a reader
    # ... nor in any command line or environment first boot passed on ...
    for call in pi.calls():
        assert TOKEN not in json.dumps(call)
    # ... only in root-only files.
    config = pi.root / "etc/rancher/k3s/config.yaml"
    assert config.read_text() == pi.config.k3s.config_yaml
    assert mode(config) == 0o600
    assert mode(pi.payload / "node.json") == 0o600 and mode(pi.payload) == 0o700
    assert mode(pi.root / "var/lib/piimg/state.json") == 0o600


def test_server_first_boot_end_to_end(pi: FakePi) -> None:
    r = pi.run()
    assert r.returncode == 0, r.stdout + r.stderr
    status = assert_done(pi, SERVER_STEPS)
    assert status["ingress_ip"] == "10.0.4.1"
    assert status["hostname"] == "k8s-master" and status["version"]
    assert all(s["attempts"] == 1 for s in status["steps"].values())

    # the install script got exactly the pinned version and role, no token
    assert pi.installs() == 1
    env = pi.install_env()
    assert env["INSTALL_K3S_VERSION"] == VERSION
    assert env["INSTALL_K3S_EXEC"] == "server"
    for absent in ("K3S_URL", "K3S_TOKEN", "INSTALL_K3S_CHANNEL", "INSTALL_K3S_SKIP_DOWNLOAD"):
        assert absent not in env
    assert not any(TOKEN in v for v in env.values())
    assert pi.install_args() == [str(pi.root / "var/lib/piimg/k3s-install.sh")]
    assert "/install.sh" in pi.server.requests and "/ping" not in pi.server.requests

    # system changes went through the runner
    assert pi.argvs("hostnamectl") == [["hostnamectl", "set-hostname", "k8s-master"]]
    assert (pi.root / "etc/hostname").read_text() == "k8s-master\n"
    assert "127.0.1.1\tk8s-master" in (pi.root / "etc/hosts").read_text()
    assert "raspberrypi" not in (pi.root / "etc/hosts").read_text()
    keyfile = pi.root / "etc/NetworkManager/system-connections/piimg-eth0.nmconnection"
    assert "address1=10.0.2.10/23,10.0.2.1\n" in keyfile.read_text()
    assert "dns=8.8.8.8;8.8.4.4;\n" in keyfile.read_text()
    assert mode(keyfile) == 0o600
    assert pi.argvs("nmcli") == [["nmcli", "connection", "reload"], ["nmcli", "connection", "up", "piimg-eth0"]]
    assert pi.argvs("systemctl") == [["systemctl", "disable", "piimg-firstboot.service"]]
    assert not pi.argvs("systemctl", "reboot")

    # manifests deployed root-only; secrets scrubbed from the boot partition
    deployed = pi.root / "var/lib/rancher/k3s/server/manifests"
    assert sorted(p.name for p in deployed.iterdir()) == ["metallb-config.yaml", "metallb.yaml"]
    assert mode(deployed / "metallb-config.yaml") == 0o600
    assert_secrets_kept_safe(pi)

    log = pi.log()
    assert "step cluster done" in log and "10.0.4.1" in log and "first boot complete" in log
    assert TOKEN not in r.stdout + r.stderr

    # a second run (the unit started again) changes nothing
    before = pi.calls()
    r2 = pi.run()
    assert r2.returncode == 0
    assert pi.calls() == before and pi.installs() == 1
    assert_done(pi, SERVER_STEPS)


def test_agent_joins_server_url(tmp_path: Path, k3s_server: K3sServer) -> None:
    pi = FakePi(tmp_path, k3s_server, role="agent")
    r = pi.run()
    assert r.returncode == 0, r.stdout + r.stderr
    status = assert_done(pi, AGENT_STEPS)
    assert status["ingress_ip"] is None
    env = pi.install_env()
    assert env["K3S_URL"] == k3s_server.url
    assert env["INSTALL_K3S_EXEC"] == "agent"
    assert env["INSTALL_K3S_VERSION"] == VERSION
    assert "K3S_TOKEN" not in env
    assert "/ping" in k3s_server.requests
    assert not pi.argvs("k3s")  # no cluster waits on an agent
    assert_secrets_kept_safe(pi)
