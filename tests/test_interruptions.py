"""Interrupted and killed runs (issue 16, items 4 and 10): SIGTERM is Ctrl-C, nothing
half-written under a final name, a re-flashed card never keeps its old partition table
over half-written partitions, and a later run removes what a killed one left (only that).

The signals are real: a child ``piimg`` sends SIGTERM or SIGKILL to itself at a
fixed point of the work (the first write after the partition table area, or the
first edit of a node image), so nothing depends on timing. The only targets
written are files under the test's tmp_path.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from piimg.errors import Interrupted
from piimg.flash import write
from piimg.image import blockmap
from tests.conftest import TEST_KEY, have
from tests.flashfixtures import PATTERN, prefill
from tests.imagegen import GeneratedImage, MiB, make_image, tools_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("sfdisk")), reason="needs dosfstools, mtools, e2fsprogs, fdisk"),
]

SPEC = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
"""

#: Runs piimg's CLI in a child that signals itself at a fixed point:
#: argv: SIGNUM WHERE piimg-args...; WHERE is "flash-body" or "build-write" (the node's
#: output file exists under its temporary name: a full image copied, or an overlay written).
CHILD = textwrap.dedent(
    """
    import os, sys
    exec(os.environ.get("PIIMG_TEST_PINS_PRELUDE", ""))  # the test's generated k3s release (tests/releaseserver.py)
    sig, where, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if where == "flash-body":
        import piimg.flash.write as w
        real = w._pwrite_full
        def pwrite(fd, buf, offset):
            real(fd, buf, offset)
            if offset >= w.HEAD:
                os.kill(os.getpid(), sig)
        w._pwrite_full = pwrite
    else:
        import piimg.build.images as b
        real_copy, real_write = b.sparse_copy, b.overlay.write_overlay
        def sparse_copy(src, dst):
            method = real_copy(src, dst)
            os.kill(os.getpid(), sig)
            return method
        def write_overlay(fh, fields, extents):
            header = real_write(fh, fields, extents)
            fh.flush()
            os.kill(os.getpid(), sig)
            return header
        b.sparse_copy = sparse_copy
        b.overlay.write_overlay = write_overlay
    from piimg.cli import main
    sys.exit(main(args))
    """
)


def run_child(sig: int, where: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(int(sig)), where, *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("img") / "pi.img", boot_mib=48, root_mib=64, root_fill_mib=16)


def has_partition_table(path: Path) -> bool:
    """sfdisk (util-linux), not piimg, says whether the file carries a partition table."""
    proc = subprocess.run(["sfdisk", "-d", str(path)], capture_output=True, text=True)
    return proc.returncode == 0 and "start=" in proc.stdout


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ---------------------------------------------------------------- flash


def test_sigterm_during_flash_to_a_new_file_leaves_nothing(image: GeneratedImage, tmp_path: Path) -> None:
    target = tmp_path / "new.img"
    r = run_child(signal.SIGTERM, "flash-body", "flash", str(image.path), str(target), "--force", "--yes")
    assert r.returncode == 128 + signal.SIGTERM, r
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == f"terminated (SIGTERM): nothing was written to {target}", r.stderr
    assert "Traceback" not in r.stderr
    assert not target.exists() and leftovers(tmp_path) == []


def test_kill_9_during_flash_to_a_new_file_leaves_nothing_under_its_name(image: GeneratedImage, tmp_path: Path) -> None:
    target = tmp_path / "new.img"
    r = run_child(signal.SIGKILL, "flash-body", "flash", str(image.path), str(target), "--force", "--yes")
    assert r.returncode == -signal.SIGKILL
    assert not target.exists()  # what a killed run leaves has a temporary name only
    assert len(leftovers(tmp_path)) == 1
    # the next flash to the same name removes the dead run's temporary and succeeds
    r = run_child(0, "none", "flash", str(image.path), str(target), "--force", "--yes")
    assert r.returncode == 0, r
    assert leftovers(tmp_path) == [] and target.stat().st_size == image.path.stat().st_size


def test_sigterm_while_reflashing_a_card_clears_its_old_table(image: GeneratedImage, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    prefill(card, 256 * MiB)
    r = run_child(0, "none", "flash", str(image.path), str(card), "--force", "--yes")
    assert r.returncode == 0, r
    assert has_partition_table(card)  # the card as a user has it: bootable, from an earlier flash
    r = run_child(signal.SIGTERM, "flash-body", "flash", str(image.path), str(card), "--force", "--yes")
    assert r.returncode == 128 + signal.SIGTERM, r
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"terminated (SIGTERM): {card} is incomplete ("), last
    assert "will not boot" in last and "run the same piimg flash again" in last
    # the old table no longer points at the half-written partitions
    assert not has_partition_table(card)


class _Interrupting:
    """A reporter whose bar raises Ctrl-C after ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.done = limit, 0

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def bar(self, description: str, total: int | None, *, unit: str = "B") -> Any:
        import contextlib

        outer = self

        class Bar:
            def update(self, n: int) -> None:
                outer.done += n
                if outer.done >= outer.limit:
                    raise KeyboardInterrupt

        return contextlib.nullcontext(Bar())


def test_ctrl_c_says_what_state_the_card_is_in(image: GeneratedImage, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    prefill(card, 256 * MiB)
    bmap = blockmap.compute_for(image.path)
    write.write_image(image.path, card, bmap)
    with pytest.raises(Interrupted) as info:
        write.write_image(image.path, card, bmap, reporter=_Interrupting(8 * MiB))  # type: ignore[arg-type]
    assert info.value.signum == signal.SIGINT
    assert "is incomplete" in info.value.state and "flash again" in info.value.state
    assert not has_partition_table(card)
    assert card.read_bytes()[:MiB] == bytes(MiB)  # the whole first MiB, not only sector 0
    # free space after the first MiB was not touched by the clearing
    free = blockmap.compute_for(image.path).free_ranges()[-1]
    with open(card, "rb") as fh:
        fh.seek(free.start - free.start % len(PATTERN) + len(PATTERN))
        assert fh.read(len(PATTERN)) == PATTERN


def test_ctrl_c_before_the_first_write_says_the_card_is_unchanged(image: GeneratedImage, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    prefill(card, 256 * MiB)

    def refuse(*args: object) -> int:
        raise KeyboardInterrupt

    bmap = blockmap.compute_for(image.path)
    orig = write._clear_head
    write._clear_head = refuse  # type: ignore[assignment]
    try:
        with pytest.raises(Interrupted) as info:
            write.write_image(image.path, card, bmap)
    finally:
        write._clear_head = orig
    assert info.value.state == f"nothing was written to {card}"
    assert card.read_bytes()[: len(PATTERN)] == PATTERN


# ---------------------------------------------------------------- build


@pytest.mark.parametrize("full", [False, True], ids=["overlay", "full-image"])
def test_sigterm_during_build_leaves_no_image_and_no_temporary(image: GeneratedImage, project: Path, full: bool) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    r = run_child(signal.SIGTERM, "build-write", "build", "--image", str(image.path), *(["--full-images"] if full else []),
                  cwd=project)
    assert r.returncode == 128 + signal.SIGTERM, r
    assert r.stderr.strip().splitlines()[-1] == "terminated (SIGTERM)", r.stderr
    out = project / "build"
    assert not (out / "k8s-master.img").exists() and not (out / "k8s-master.overlay").exists()
    assert leftovers(out) == []


def test_a_later_build_removes_only_its_own_dead_temporaries(image: GeneratedImage, project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    r = run_child(signal.SIGKILL, "build-write", "build", "--image", str(image.path), "--full-images", cwd=project)
    assert r.returncode == -signal.SIGKILL
    out = project / "build"
    (dead,) = leftovers(out)
    assert dead.startswith(".k8s-master.img.") and not (out / "k8s-master.img").exists()
    assert (out / dead).stat().st_size == image.path.stat().st_size  # full size: worth cleaning
    # what must survive: a temporary another piimg is still writing (it holds the lock),
    # other nodes' and other programs' files
    alive = out / ".k8s-master.img.zzzzzzzz.part"
    other_node = out / ".k8s-worker.img.abcdefgh.part"
    foreign = [out / ".k8s-master.img.part", out / ".k8s-master.img.abc.part", out / "notes.part",
               out / ".k8s-master.img.abcdefgh.part.keep"]
    for path in (alive, other_node, *foreign):
        path.write_bytes(b"x")
    fd = os.open(alive, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = piimg("build", "--image", str(image.path), "--full-images")
        assert r.exit_code == 0, r
    finally:
        os.close(fd)
    assert not (out / dead).exists()
    assert alive.exists() and other_node.exists() and all(p.exists() for p in foreign)
    assert (out / "k8s-master.img").exists()
    assert json.loads((out / "last.json").read_text())["nodes"]["k8s-master"]


def test_stale_flash_copy_in_the_cache_is_removed_by_the_next_one(tmp_path: Path) -> None:
    from piimg.fsutil import temp_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / "flash-abcd1234"
    dead.mkdir()
    (dead / "image.img").write_bytes(b"\0" * 4096)
    with temp_dir(cache, "flash-") as mine:
        assert mine.is_dir() and not dead.exists()
        # a second run while the first is alive leaves the first's folder alone
        with temp_dir(cache, "flash-") as other:
            assert mine.is_dir() and other != mine
    assert list(cache.iterdir()) == []
