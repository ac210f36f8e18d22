"""The build's payload against first boot's scrub list: after the scrub no secret is left on the FAT.

(firstrun.sh, which holds the SSH host key in the systemd format, is left out:
it deletes itself in the hook boot, before first boot runs.)

Renders every node's boot-partition files with :func:`piimg.build.payload.boot_edits`
(both formats, a BGP password set), lays them out as the FAT and as the root-only
copy the first-run hook makes, runs first boot's real scrub step on them, and
searches every file left on the FAT for every secret of the build. A new secret
in the payload that :mod:`piimg.firstboot.scrub` does not know fails here.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from piimg.build import payload
from piimg.firstboot import scrub
from piimg.firstboot.context import DEFAULT_TIMEOUTS, Context, StepError
from piimg.firstboot.log import Log
from piimg.firstboot.nodeconf import NodeConfig
from piimg.firstboot.runner import Runner
from piimg.firstboot.store import Store
from piimg.identity.store import NodeName
from piimg.spec import load as spec_load
from piimg.spec.model import InitFormat
from piimg.spec.secrets import Secrets
from tests.conftest import TEST_KEY

SECRETS = Secrets(k3s_token="K10" + "f00d" * 16 + "::server:" + "beef" * 8)
BGP = "md5-key-of-the-lab"


def _spec() -> object:
    raw = {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "cluster": {"bgp": {"password_env": "PIIMG_TEST_BGP"}},
        "nodes": [
            {"hostname": "m1", "role": "server", "address": "10.0.2.10"},
            {"hostname": "w1", "role": "agent", "address": "10.0.2.11"},
        ],
    }
    return spec_load.parse(raw, env={"PIIMG_TEST_BGP": BGP}, home=Path("/nonexistent-home"))


def _secrets(tmp_path: Path, spec: object) -> tuple[Secrets, list[str]]:
    """The build's secrets with the cluster identity, and every secret string to look for on the FAT."""
    secrets = SECRETS.with_identity(tmp_path / ".piimg", [NodeName(n.hostname, str(n.address)) for n in spec.nodes])  # type: ignore[attr-defined]
    assert secrets.identity is not None
    needles = [*secrets.values(), BGP]
    pems = [n.host_key.private_openssh.decode() for n in secrets.identity.nodes.values()]
    pems += [data.decode() for name, data in secrets.identity.ca.server_files.items() if name.endswith(".key")]
    for pem in pems:  # the key material, however it is indented (user-data) or escaped (JSON)
        needles += [ln.strip() for ln in pem.splitlines() if ln.strip() and not ln.startswith("-----")]
    return secrets, needles


def _lay_out(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, Path]:
    boot = tmp_path / "boot"
    for rel, data in files.items():
        (boot / rel).parent.mkdir(parents=True, exist_ok=True)
        (boot / rel).write_bytes(data)
    installed = tmp_path / "opt-piimg"
    shutil.copytree(boot / "piimg", installed)  # what firstrun.sh / runcmd do
    return boot, installed


def _ctx(tmp_path: Path, boot: Path, installed: Path) -> Context:
    cfg = NodeConfig.from_json((installed / "node.json").read_text())
    return Context(root=str(tmp_path / "root"), boot_dir=str(boot), payload_dir=str(installed), config=cfg,
                   runner=Runner(), log=Log(None, stream=io.StringIO()),
                   store=Store(str(tmp_path / "state.json"), str(boot / "piimg" / "status.json"), cfg.hostname),
                   timeouts=DEFAULT_TIMEOUTS)


@pytest.mark.parametrize("fmt", [InitFormat.SYSTEMD, InitFormat.CLOUDINIT])
@pytest.mark.parametrize("node", ["m1", "w1"])
def test_no_secret_is_left_on_the_boot_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: InitFormat,
                                                 node: str) -> None:
    monkeypatch.setenv("PIIMG_TEST_BGP", BGP)
    spec = _spec()
    secrets, needles = _secrets(tmp_path, spec)
    edits = payload.boot_edits(spec, spec.node(node), secrets, fmt)  # type: ignore[attr-defined]
    holders = sorted(rel for rel, data in edits.files.items() if any(s.encode() in data for s in needles))
    assert "piimg/node.json" in holders  # the test sees the secrets it looks for
    if fmt is not InitFormat.SYSTEMD:
        assert "user-data" in holders  # the SSH host key, for cloud-init's ssh module
    boot, installed = _lay_out(tmp_path, {k: v for k, v in edits.files.items() if k != "firstrun.sh"})
    scrub.step_scrub(_ctx(tmp_path, boot, installed))
    for path in boot.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in needles:
                assert secret.encode() not in data, f"{path.relative_to(boot)} still holds a secret after the scrub"
    # the root-only copy still has everything later steps need
    assert NodeConfig.from_json((installed / "node.json").read_text()).secrets["k3s_token"] == SECRETS.k3s_token
    for rel in holders:
        if rel.startswith("piimg/"):  # (user-data has done its work: cloud-init ran before first boot)
            assert (installed / rel.removeprefix("piimg/")).is_file()
    assert (installed.stat().st_mode & 0o077) == 0 and ((installed / "node.json").stat().st_mode & 0o077) == 0


def test_scrub_is_idempotent_and_keeps_a_readable_node_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_TEST_BGP", BGP)
    spec = _spec()
    boot, installed = _lay_out(tmp_path, payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD).files)  # type: ignore[attr-defined]
    ctx = _ctx(tmp_path, boot, installed)
    scrub.step_scrub(ctx)
    first = {p: p.read_bytes() for p in boot.rglob("*") if p.is_file()}
    scrub.step_scrub(ctx)
    assert {p: p.read_bytes() for p in boot.rglob("*") if p.is_file()} == first
    left = NodeConfig.from_json((boot / "piimg" / "node.json").read_text())
    assert left.hostname == "m1" and left.secrets == {} and left.k3s.config_yaml == ""


def test_scrub_refuses_to_run_from_the_boot_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_TEST_BGP", BGP)
    spec = _spec()
    boot, _ = _lay_out(tmp_path, payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD).files)  # type: ignore[attr-defined]
    with pytest.raises(StepError, match="refusing to run from the boot partition"):
        scrub.step_scrub(_ctx(tmp_path, boot, boot / "piimg"))
    assert SECRETS.k3s_token in (boot / "piimg" / "node.json").read_text()
