"""``piimg status`` tells the cloud-init seed race (cloud-init#6614) apart from other SSH failures.

A node whose cloud-init read the boot partition before it was mounted boots
without its user-data: its own SSH host key, no user with your key. The pure
judgement is table-driven; the integration cases make a real sshd show both
signs (another host key than known_hosts lists, a key it does not accept).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.status import seedrace
from piimg.status.checks import Options, check_nodes
from piimg.status.model import State
from piimg.status.ssh import SshFailed
from tests.sshd import Sshd, start_sshd


@pytest.mark.parametrize(
    ("init_format", "failure", "race"),
    [
        ("cloudinit", SshFailed.HOST_KEY_CHANGED, True),
        ("cloudinit-rpi", SshFailed.LOGIN_REFUSED, True),
        ("cloudinit", SshFailed.HOST_KEY_UNKNOWN, False),  # a first contact: nothing to compare with
        ("cloudinit", SshFailed.NO_FILE, False),  # logged in: user-data was applied
        ("cloudinit", SshFailed.OTHER, False),
        ("systemd", SshFailed.HOST_KEY_CHANGED, False),  # no cloud-init on the card
        ("systemd", SshFailed.LOGIN_REFUSED, False),
        (None, SshFailed.LOGIN_REFUSED, False),  # no build record: do not guess
    ],
)
def test_judge(init_format: str | None, failure: str, race: bool) -> None:
    verdict = seedrace.judge(seedrace.NodeAccess("n1", init_format, failure))
    if not race:
        assert verdict is None
        return
    assert verdict is not None and verdict.name == "firstboot n1" and verdict.state is State.FAIL
    assert "cloud-init seed race" in verdict.detail and "power-cycle" in verdict.detail and "cloud-init#6614" in verdict.detail


SPEC_DOC = {
    "network": {"subnet": "127.0.2.0/23", "gateway": "127.0.2.1", "dhcp_pool": "127.0.3.1-127.0.3.254"},
    "cluster": {"pools": [{"name": "default", "addresses": ["127.0.4.0/23"]}]},
    "nodes": [{"hostname": "k8s-master", "role": "server", "address": "127.0.2.10"}],
}


@pytest.fixture()
def spec(home: Path) -> spec_model.Spec:
    s = spec_load.parse(SPEC_DOC)
    return dataclasses.replace(s, access=dataclasses.replace(s.access, user="root"))  # the test sshd's only account


@pytest.fixture()
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = start_sshd(tmp_path / "sshd", host=SPEC_DOC["nodes"][0]["address"])  # stands in for the node
    yield server
    server.stop()


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _client_config(sshd: Sshd, tmp_path: Path, *, other_host_key: bool = False, other_user_key: bool = False) -> Path:
    text = sshd.client_config.read_text()
    if other_host_key:  # known_hosts lists the key piimg made; the node shows its own
        known = tmp_path / "known_hosts_piimg"
        key = _keygen(tmp_path / "piimg_host_key").with_suffix(".pub").read_text()
        known.write_text(f"[{sshd.host}]:{sshd.port} {key}")
        text = "\n".join(f"  UserKnownHostsFile {known}" if "UserKnownHostsFile" in ln else ln for ln in text.splitlines()) + "\n"
    if other_user_key:  # your key never reached the node
        ident = _keygen(tmp_path / "id_not_on_node")
        text = "\n".join(f"  IdentityFile {ident}" if "IdentityFile" in ln else ln for ln in text.splitlines()) + "\n"
    cfg = tmp_path / "client_config"
    cfg.write_text(text)
    return cfg


@pytest.mark.integration
@pytest.mark.parametrize("sign", ["host key", "user key"])
@pytest.mark.parametrize("init_format", ["cloudinit", "systemd"])
def test_status_names_the_seed_race(spec: spec_model.Spec, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    sign: str, init_format: str) -> None:
    cfg = _client_config(sshd, tmp_path, other_host_key=sign == "host key", other_user_key=sign == "user key")
    monkeypatch.setenv("PIIMG_SSH_CONFIG", str(cfg))
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"step": "finish", "state": "done", "error": None}))
    opts = Options(kubeconfig=tmp_path / "none", status_file=str(status_file), timeout=5, ssh_port=sshd.port,
                   init_formats={"k8s-master": init_format})
    checks = {c.name: c for c in check_nodes(spec, opts)}
    assert checks["node k8s-master"].state is State.OK
    fb = checks["firstboot k8s-master"]
    assert fb.state is State.FAIL
    if init_format == "cloudinit":
        assert "cloud-init seed race" in fb.detail and "power-cycle" in fb.detail, fb.detail
    else:
        assert "seed race" not in fb.detail
        assert ("host key changed" if sign == "host key" else "SSH login refused") in fb.detail, fb.detail


@pytest.mark.integration
def test_a_healthy_node_is_no_race(spec: spec_model.Spec, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"step": "finish", "state": "done", "error": None}))
    opts = Options(kubeconfig=tmp_path / "none", status_file=str(status_file), ssh_port=sshd.port,
                   init_formats={"k8s-master": "cloudinit"})
    checks = {c.name: c for c in check_nodes(spec, opts)}
    assert checks["firstboot k8s-master"].state is State.OK


@pytest.mark.parametrize(
    ("init_format", "hint"),
    [("cloudinit", True), ("cloudinit-rpi", True), ("systemd", False), (None, False)],
)
def test_unreachable_hint_only_for_cloud_init(init_format: str | None, hint: bool) -> None:
    text = seedrace.unreachable_hint(init_format)
    if not hint:
        assert text is None
        return
    # a node that missed its seed keeps pi-gen's default hostname (build.sh TARGET_HOSTNAME:-raspberrypi) and DHCP
    assert text is not None and "cloud-init#6614" in text and "raspberrypi.local" in text
    assert "DHCP" in text and "power-cycle" in text and "newest Raspberry Pi OS image" in text


def _closed_port(host: str) -> int:
    """A port on ``host`` that nothing listens on (bound once to learn a free number, then closed)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("init_format", ["cloudinit", "systemd", None])
def test_an_unreachable_cloud_init_node_gets_the_seed_race_hint(spec: spec_model.Spec, tmp_path: Path,
                                                                 init_format: str | None) -> None:
    # the node missed its seed: nothing answers at its static address (127.0.2.10, nothing listening)
    host = SPEC_DOC["nodes"][0]["address"]
    opts = Options(kubeconfig=tmp_path / "none", timeout=2, ssh_port=_closed_port(host),
                   init_formats={} if init_format is None else {"k8s-master": init_format})
    checks = {c.name: c for c in check_nodes(spec, opts)}
    node = checks["node k8s-master"]
    assert node.state is State.FAIL and "unreachable" in node.detail, node.detail
    assert checks["firstboot k8s-master"].state is State.SKIPPED
    if init_format == "cloudinit":
        assert "seed race (cloud-init#6614)" in node.detail and "raspberrypi.local" in node.detail, node.detail
    else:
        assert "seed race" not in node.detail and "raspberrypi" not in node.detail, node.detail
