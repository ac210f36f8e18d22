"""What the commands tell the user to do next, --version, and the "run as root" hint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from piimg import versions
from tests.conftest import TEST_KEY, have

SPEC_3 = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
  - {{hostname: k8s-agent-1, role: agent, address: 10.0.2.11}}
  - {{hostname: k8s-agent-2, role: agent, address: 10.0.2.12}}
"""


def _next(stderr: str) -> list[str]:
    return [ln.removeprefix("next: ") for ln in stderr.splitlines() if ln.startswith("next: ")]


def test_version_names_the_pinned_versions(piimg: Any) -> None:
    r = piimg("--version")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "piimg, version 0.1.0"
    text = r.stdout
    for pin in (versions.K3S_VERSION, versions.METALLB_VERSION, versions.NGINX_INGRESS_CHART_VERSION,
                versions.INGRESS_NGINX_CHART_VERSION):
        assert pin in text, (pin, text)


def test_init_says_what_next_and_warns_without_a_key(project: Path, home: Path, piimg: Any) -> None:
    r = piimg("init")
    assert r.exit_code == 0, r
    assert _next(r.stderr) == ["edit piimg.yaml (nodes, network, router), then: piimg validate"]
    assert "warning" not in r.stderr  # the home fixture has ~/.ssh/id_ed25519.pub
    (home / ".ssh" / "id_ed25519.pub").unlink()
    r = piimg("-c", "other.yaml", "init")
    assert r.exit_code == 0, r
    assert "no ~/.ssh/id_*.pub found" in r.stderr and "ssh-keygen -t ed25519" in r.stderr
    assert _next(r.stderr) == ["edit other.yaml (nodes, network, router), then: piimg -c other.yaml validate"]


def test_init_with_a_broken_key_file_warns_and_still_writes_the_spec(project: Path, home: Path, piimg: Any) -> None:
    """A ~/.ssh/id_*.pub cut off mid-paste: init names the file and the fault and exits 0 with
    the spec written once (no temp file left); validate still refuses it."""
    from piimg.cli.spec_cmds import default_spec_text

    kind, blob, comment = TEST_KEY.split()
    (home / ".ssh" / "id_ed25519.pub").write_text(f"{kind} {blob[:40]} {comment}\n")
    r = piimg("init")
    assert r.exit_code == 0, r
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1, r.stderr
    assert str(home / ".ssh" / "id_ed25519.pub") in warnings[0] and "cut off?" in warnings[0], warnings
    assert "`piimg validate` refuses it" in warnings[0], warnings
    assert "no ~/.ssh/id_*.pub found" not in r.stderr  # the file is there, it is broken
    assert sorted(p.name for p in project.iterdir()) == ["piimg.yaml"]
    assert (project / "piimg.yaml").read_text() == default_spec_text()
    r = piimg("validate")
    assert r.exit_code != 0, r
    assert str(home / ".ssh" / "id_ed25519.pub") in r.stderr and "not an OpenSSH public key" in r.stderr, r


def test_validate_points_at_build(project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text(SPEC_3)
    r = piimg("validate")
    assert r.exit_code == 0, r
    assert _next(r.stderr) == ["piimg build   (all 3 nodes; --node NAME for one)"]
    r = piimg("validate", "--json")
    assert r.exit_code == 0 and r.stdout.lstrip().startswith("{")  # stdout stays pure JSON


@pytest.mark.skipif(not have("setpriv"), reason="needs setpriv (util-linux)")
def test_flash_as_a_user_without_write_access_says_how_to_run_as_root(tmp_path: Path) -> None:
    """As uid 65534 a root-owned target is refused before the prompt, with the sudo command
    naming piimg by absolute path (sudo's secure_path does not contain venvs or pipx)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    work = Path(tempfile.mkdtemp(prefix="piimg-noroot-"))
    try:
        os.chmod(work, 0o755)  # root's folder: nobody may create or replace files in it
        image = work / "raw.img"
        image.write_bytes(os.urandom(64 * 1024))
        os.chmod(image, 0o644)
        target = work / "card.bin"
        target.write_bytes(b"\0" * 128 * 1024)
        os.chmod(target, 0o644)
        before = target.read_bytes()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LC_ALL": "C.UTF-8",
               "PIIMG_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                sys.executable, "-m", "piimg", "flash", str(image), str(target), "--force", "--yes"]
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[0] == f"error: {target}: permission denied (not writable)", proc.stderr
        assert lines[1] == (f"hint: run it as root: sudo {sys.executable} -m piimg flash {image} {target} --force --yes"
                            "   (or add yourself to the disk group)"), proc.stderr
        assert target.read_bytes() == before
    finally:
        shutil.rmtree(work, ignore_errors=True)
