"""Every command has useful --help; the installed console script works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from piimg.cli import cli
from tests.conftest import TEST_KEY

COMMANDS = [
    ["init"], ["validate"], ["os", "list"], ["fetch"], ["build"], ["flash"], ["router-setup"],
    ["manifests"], ["kubeconfig"], ["status"], ["export"], ["devices"], ["completion"],
]


def test_top_help_lists_every_command(piimg) -> None:
    r = piimg("--help")
    assert r.exit_code == 0
    for name in ("init", "validate", "os", "fetch", "build", "flash", "router-setup", "manifests", "kubeconfig", "status"):
        assert f"  {name} " in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_command_help(piimg, cmd: list[str]) -> None:
    r = piimg(*cmd, "--help")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("Usage: piimg " + " ".join(cmd))
    # a sentence of description, not just the usage line
    assert len(r.stdout.strip().splitlines()) >= 4


def test_flash_examples_are_their_own_paragraph(piimg) -> None:
    r = piimg("flash", "--help")
    assert "for the next.\n\n  Examples:\n    piimg flash /dev/sdb" in r.stdout, r.stdout


def test_registered_commands_match_spec() -> None:
    assert set(cli.commands) == {
        "init", "validate", "os", "fetch", "build", "flash", "router-setup", "manifests", "kubeconfig", "status",
        "export",  # issue 18: full images from overlays, for other flashers
        "devices",  # issue 18 / S10: the disks flash would write
        "completion",  # usability audit S18: piimg completion bash|zsh|fish
    }


def test_unknown_command_is_usage_error(piimg) -> None:
    r = piimg("frobnicate")
    assert r.exit_code == 2
    assert "No such command" in r.stderr


def _installed() -> str | None:
    candidate = Path(sys.executable).with_name("piimg")
    return str(candidate) if candidate.exists() else shutil.which("piimg")


@pytest.mark.integration
@pytest.mark.skipif(_installed() is None, reason="piimg console script not installed (pip install -e .)")
def test_installed_console_script(tmp_path: Path) -> None:
    exe = _installed()
    assert exe
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(TEST_KEY + "\n")  # a real key: init/validate parse it
    env = {**os.environ, "HOME": str(home)}
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("piimg, version")
    assert subprocess.run([exe, "init"], capture_output=True, text=True, env=env, cwd=tmp_path).returncode == 0
    out = subprocess.run([exe, "validate"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "k8s-master" in out.stdout
    bad = subprocess.run([exe, "-c", "missing.yaml", "validate"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: missing.yaml: no such file\nhint: create one with: piimg init"
