"""Ordinary OS errors (issue 16, item 5): permission denied, a full disk and a dangling
symbolic link are one line naming the file and the cause, never "internal error".

The errors are real, not mocked: permission denied comes from running piimg as root
without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (``setpriv --bounding-set``, util-linux),
so file modes apply; a full disk is a 2 MiB tmpfs mounted in a private mount namespace
(``unshare --mount``) that only the child piimg sees. Nothing outside tmp_path is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from piimg.errors import UnsafeTarget
from piimg.flash import verb
from piimg.flash.devices import LinuxDevices
from tests.conftest import TEST_KEY, have
from tests.imagegen import GeneratedImage, make_image, tools_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs"),
]

SPEC = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
"""
AS_USER_FILE_MODES = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("img") / "pi.img", boot_mib=48, root_mib=24)


def piimg_child(*args: str, wrap: list[str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the test's generated k3s release pins (tests/releaseserver.py), then piimg's own __main__
    code = 'import os, runpy, sys\nexec(os.environ.get("PIIMG_TEST_PINS_PRELUDE", ""))\n' \
        'sys.argv[0] = "piimg"\nrunpy.run_module("piimg", run_name="__main__", alter_sys=True)\n'
    argv = [*(wrap or []), sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return [ln for ln in stderr.strip().splitlines() if ln.startswith(("error:", "hint:"))]


def no_output(folder: Path) -> None:
    assert not (folder / "k8s-master.img").exists() and not (folder / "k8s-master.overlay").exists()
    assert list(folder.glob("shared-*.layer")) == [] if folder.exists() else True
    assert [p.name for p in folder.iterdir() if p.name.endswith(".part")] == [] if folder.exists() else True


@pytest.mark.skipif(os.geteuid() == 0 and not have("setpriv"), reason="setpriv (util-linux) is not installed")
def test_permission_denied_on_the_output_folder(image: GeneratedImage, project: Path) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    out = project / "out"
    out.mkdir(mode=0o555)
    out.chmod(0o555)
    r = piimg_child("build", "--image", str(image.path), "-o", str(out), wrap=AS_USER_FILE_MODES if os.geteuid() == 0 else None,
                    cwd=project)
    assert r.returncode == 1, r
    err, hint = error_lines(r.stderr)
    # the first file a build writes is the build's shared layer (the blocks every node gets alike)
    assert re.fullmatch(rf"error: {re.escape(str(out))}/shared-[0-9a-f]{{16}}\.layer: Permission denied "
                        r"\(nothing was written under this name\)", err), err
    assert hint == "hint: check the permissions of the file and of its folder"
    no_output(out)


@pytest.mark.skipif(os.geteuid() == 0 and not have("setpriv"), reason="setpriv (util-linux) is not installed")
def test_permission_denied_on_the_spec(project: Path) -> None:
    spec = project / "piimg.yaml"
    spec.write_text(SPEC)
    spec.chmod(0o000)
    r = piimg_child("validate", wrap=AS_USER_FILE_MODES if os.geteuid() == 0 else None, cwd=project)
    assert r.returncode == 1, r
    (err, *_) = error_lines(r.stderr)
    assert str(spec.name) in err and "Permission denied" in err, err


@pytest.mark.skipif(os.geteuid() != 0 or not have("unshare"), reason="a private tmpfs needs root and unshare")
def test_disk_full_while_building(image: GeneratedImage, project: Path) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    out = project / "small"
    out.mkdir()
    # 16 KiB: smaller than a node's overlay (the payload alone is larger)
    script = f'mount -t tmpfs -o size=16k tmpfs "{out}" && exec "$@"'
    r = piimg_child("build", "--image", str(image.path), "-o", str(out),
                    wrap=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"], cwd=project)
    assert r.returncode == 1, r
    err, hint = error_lines(r.stderr)
    assert err.startswith("error: ") and "No space left on device" in err, err
    assert re.match(rf"error: {re.escape(str(out))}/shared-[0-9a-f]{{16}}\.layer: ", err) and ".part" not in err, err
    assert hint == "hint: free some space on the file system that holds it, or choose another folder"
    no_output(out)  # the tmpfs is gone with the namespace; the folder below it stays empty too


@pytest.mark.skipif(os.geteuid() != 0 or not have("unshare"), reason="a private tmpfs needs root and unshare")
def test_disk_full_while_flashing_into_a_new_file(image: GeneratedImage, project: Path) -> None:
    out = project / "small"
    out.mkdir()
    script = f'mount -t tmpfs -o size=2m tmpfs "{out}" && exec "$@"'
    target = out / "card.img"
    r = piimg_child("flash", str(image.path), str(target), "--force", "--yes",
                    wrap=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"], cwd=project)
    assert r.returncode == 1, r
    err, hint = error_lines(r.stderr)
    assert err.startswith(f"error: {target}: ") and "No space left on device" in err, err
    assert hint.startswith("hint: free some space")


def test_dangling_link_to_a_missing_card_is_never_created(image: GeneratedImage, tmp_path: Path, piimg: Any,
                                                          project: Path) -> None:
    gone = Path("/dev/piimg-test-h16-unplugged")
    assert not gone.exists()
    link = tmp_path / "card"
    link.symlink_to(gone)
    r = piimg("flash", str(image.path), str(link), "--force", "--yes")
    assert r.exit_code == 3, r
    (err, _hint) = error_lines(r.stderr)
    assert err == (f"error: {link}: no such device (a symbolic link to {gone}, which does not exist); "
                   "piimg never creates a file under /dev")
    assert not gone.exists() and link.is_symlink()


def test_dangling_link_under_dev_is_never_created(image: GeneratedImage, tmp_path: Path) -> None:
    # a /dev/disk/by-id style link whose disk was unplugged, in a stand-in /dev
    dev = tmp_path / "dev"
    (dev / "disk" / "by-id").mkdir(parents=True)
    link = dev / "disk" / "by-id" / "usb-SanDisk_Ultra"
    link.symlink_to("../../sdz")
    for force in (False, True):
        with pytest.raises(UnsafeTarget, match="no such device"):
            verb.flash(image.path, str(link), devices=LinuxDevices(dev_root=dev), confirm=lambda d: True, force=force)
    assert not (dev / "sdz").exists()


def test_dangling_link_elsewhere_is_refused(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    link = tmp_path / "card.img"
    link.symlink_to(tmp_path / "elsewhere" / "card.img")
    r = piimg("flash", str(image.path), str(link), "--force", "--yes")
    assert r.exit_code == 3, r
    assert "is a symbolic link to" in r.stderr and "which does not exist" in r.stderr
    assert not (tmp_path / "elsewhere").exists()
