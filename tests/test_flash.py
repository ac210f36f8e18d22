"""piimg flash end to end: real writes, only to files and loop devices the tests create."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from piimg.build import lastbuild
from piimg.errors import UnsafeTarget
from piimg.flash import verb, write
from piimg.flash.devices import Device, LinuxDevices, Mount
from piimg.image import blockmap
from tests.conftest import have, run_ok
from tests.flashfixtures import PATTERN, Loop, assert_own_loop, make_loop, pattern_at, prefill, read_at
from tests.imagegen import GeneratedImage, MiB, make_image, tools_available

__all__ = ["make_loop"]  # the fixture

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs"),
]

CARD = 256 * MiB


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    tmp = tmp_path_factory.mktemp("img")
    return make_image(tmp / "pi.img", boot_mib=64, root_mib=160, root_fill_mib=24)


def check_card(image: GeneratedImage, target: str | Path, tmp_path: Path) -> None:
    """The target equals the image on every mapped range, its file systems check clean,
    and the pattern survived on every free range (free space was never written)."""
    bmap = blockmap.compute_for(image.path)
    for r in bmap.ranges:
        assert read_at(target, r.start, r.length) == read_at(image.path, r.start, r.length), f"range {r}"
    free = bmap.free_ranges()
    assert sum(r.length for r in free) > 100 * MiB, "the test image should have lots of free space"
    for r in free:
        assert read_at(target, r.start, r.length) == pattern_at(r.start, r.length), f"free range {r} was written"
    boot = tmp_path / "boot.part"
    boot.write_bytes(read_at(target, image.boot_offset, image.boot_size))
    run_ok(["fsck.vfat", "-n", str(boot)])
    run_ok(["e2fsck", "-fn", f"{target}?offset={image.root_offset}"])


def test_flash_to_a_file_needs_force(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", str(image.path), str(target), "--yes")
    assert r.exit_code == 3, r
    assert "regular file" in r.stderr and "--force" in r.stderr
    assert read_at(target, 0, 4096) == PATTERN
    r = piimg("flash", str(image.path), str(target), "--yes", "--force")
    assert r.exit_code == 0, r
    assert "verified" in r.stdout and "MiB/s" in r.stdout
    check_card(image, target, tmp_path)


def test_flash_to_a_loop_device(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path, make_loop: Any) -> None:
    loop: Loop = make_loop(CARD)
    r = piimg("flash", str(image.path), loop.device, "--yes")
    assert r.exit_code == 3 and "not a removable disk" in r.stderr, r  # loop devices need --force
    assert_own_loop(loop)
    r = piimg("flash", str(image.path), loop.device, "--yes", "--force")
    assert r.exit_code == 0, r
    assert "verified in" in r.stdout
    check_card(image, loop.device, tmp_path)


def test_too_small_loop_device_refused(image: GeneratedImage, piimg: Any, project: Path, make_loop: Any) -> None:
    loop: Loop = make_loop(64 * MiB)
    r = piimg("flash", str(image.path), loop.device, "--yes", "--force")
    assert r.exit_code == 3 and "too small" in r.stderr, r
    assert read_at(loop.backing, 0, 4096) == PATTERN


def test_corruption_below_the_page_cache_is_caught(image: GeneratedImage, make_loop: Any) -> None:
    """Corrupt the loop device's backing file after the write, with good data in the
    device's page cache: a cached read-back would pass, piimg's must not."""
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    bmap = blockmap.compute_for(image.path)
    bad = bmap.ranges[-1].start + 12345  # somewhere in the root file system's data
    good = read_at(image.path, bad, 1)

    def corrupt_below_cache() -> None:
        with open(loop.device, "rb") as fh:  # buffered: puts the good data into the device's page cache
            fh.seek(bad - 5000)
            assert fh.read(8192)[5000:5001] == good
        fd = os.open(loop.backing, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([good[0] ^ 0xFF]), bad)
            os.fsync(fd)
        finally:
            os.close(fd)
        # the cached view of the device still shows the good byte: a cached verify proves nothing
        assert read_at(loop.device, bad, 1) == good

    with pytest.raises(write.VerifyFailed) as info:
        write.write_image(image.path, loop.device, bmap, reporter=AfterWriting(corrupt_below_cache))  # type: ignore[arg-type]
    assert info.value.offset == bad
    assert f"byte {bad}" in info.value.message and loop.device in info.value.message


def test_corrupted_file_target_reports_the_first_bad_offset(image: GeneratedImage, tmp_path: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    bmap = blockmap.compute_for(image.path)
    bad = [bmap.ranges[1].start + 777, bmap.ranges[-1].start + 4096 * 3]

    def corrupt() -> None:
        with open(target, "r+b") as fh:
            for off in bad:
                fh.seek(off)
                byte = fh.read(1)
                fh.seek(off)
                fh.write(bytes([byte[0] ^ 0x55]))

    with pytest.raises(write.VerifyFailed) as info:
        write.write_image(image.path, target, bmap, reporter=AfterWriting(corrupt))  # type: ignore[arg-type]
    assert info.value.offset == min(bad)
    # --no-verify: the same corruption goes unnoticed
    unverified = AfterWriting(corrupt)
    write.write_image(image.path, target, bmap, verify=False, reporter=unverified)  # type: ignore[arg-type]
    assert unverified.ran == 1


class _Scripted:
    """A reporter that acts on the writer's progress: ``updated`` for each bar update,
    ``closed`` when a bar closes without error."""

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    @contextmanager
    def bar(self, description: str, total: int | None, *, unit: str = "B") -> Iterator[Any]:
        outer = self

        class Bar:
            def update(self, n: int) -> None:
                outer.updated(n)

        yield Bar()
        self.closed(description)

    def updated(self, n: int) -> None:
        pass

    def closed(self, description: str) -> None:
        pass


class AfterWriting(_Scripted):
    """Runs ``action`` when the writing bar closes: the writer closes it once everything
    is on the target (after its last fsync) and before the read-back, so ``action``
    changes the card between the two, as a faulty card would."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.ran = 0

    def closed(self, description: str) -> None:
        if description.startswith("writing "):
            self.ran += 1
            self.action()


class _Interrupting(_Scripted):
    """Raises KeyboardInterrupt once ``limit`` bytes are written (Ctrl-C mid-flash)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.done = 0

    def updated(self, n: int) -> None:
        self.done += n
        if self.done >= self.limit:
            raise KeyboardInterrupt


def test_interrupted_flash_leaves_the_first_mib_cleared(image: GeneratedImage, make_loop: Any) -> None:
    # cleared first, written last: an interrupted card has no partition table at all,
    # neither the new one nor an old one pointing at half-written partitions
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    bmap = blockmap.compute_for(image.path)
    total = sum(r.length for r in bmap.ranges)
    with pytest.raises(KeyboardInterrupt):
        write.write_image(image.path, loop.device, bmap, reporter=_Interrupting(total - MiB))  # all but the head  # type: ignore[arg-type]
    assert read_at(loop.backing, 0, MiB) == bytes(MiB)
    later = bmap.ranges[-1]
    assert read_at(loop.backing, later.start, 4096) == read_at(image.path, later.start, 4096)


def test_interrupted_flash_to_a_new_file_leaves_no_file(image: GeneratedImage, tmp_path: Path) -> None:
    bmap = blockmap.compute_for(image.path)
    new, old = tmp_path / "new.img", tmp_path / "old.img"
    prefill(old, CARD)
    for target in (new, old):
        with pytest.raises(KeyboardInterrupt):
            write.write_image(image.path, target, bmap, reporter=_Interrupting(MiB))  # type: ignore[arg-type]
    assert not new.exists()  # made by flash: removed, no half-written card image
    assert old.exists()  # the user's own file stays (like a device)


def test_ctrl_c_says_interrupted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from piimg import cli

    def interrupt(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lastbuild, "load", interrupt)
    assert cli.main(["flash", "/tmp/piimg-test-unused"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_bmap_file_from_bmaptool(image: GeneratedImage, tmp_path: Path) -> None:
    if not have("bmaptool"):
        pytest.skip("bmaptool (bmap-tools) is not installed")
    bmap_file = tmp_path / "pi.bmap"
    run_ok(["bmaptool", "create", "-o", str(bmap_file), str(image.path)])
    parsed = blockmap.parse_bmap(bmap_file, image.path.stat().st_size)
    assert parsed.ranges and parsed.ranges[0].start == 0
    target = tmp_path / "card.img"
    prefill(target, CARD)
    result = write.write_image(image.path, target, parsed)
    assert result.verified
    for r in parsed.ranges:
        assert read_at(target, r.start, r.length) == read_at(image.path, r.start, r.length)
    with pytest.raises(Exception, match="made for an image of"):
        blockmap.parse_bmap(bmap_file, 4096)


def test_computed_map_skips_free_space(image: GeneratedImage) -> None:
    bmap = blockmap.compute_for(image.path)
    assert bmap.ranges[0].start == 0
    assert 24 * MiB < bmap.mapped_bytes < 64 * MiB  # of a 232 MiB image
    assert all(r.start % 4096 == 0 and (r.length % 4096 == 0 or r.end == bmap.image_size) for r in bmap.ranges)


def write_last_build(project: Path, images: dict[str, Path]) -> None:
    build = project / "build"
    build.mkdir(exist_ok=True)
    nodes = {n: {"image": str(p), "size": p.stat().st_size, "role": "server", "address": "10.0.2.10", "init_format": "systemd"}
             for n, p in images.items()}
    (build / "last.json").write_text(json.dumps({"schema": 1, "built_at": "2026-11-27T03:40:00Z", "spec": str(project / "piimg.yaml"),
                                                 "base": {"path": "/x", "sha256": "0", "name": "x", "init_format": "systemd"},
                                                 "nodes": nodes}))


def test_last_build_is_the_default_image(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    target = tmp_path / "card.img"
    r = piimg("flash", str(target), "--yes", "--force")
    assert r.exit_code != 0 and "nothing built yet" in r.stderr
    write_last_build(project, {"k8s-master": image.path, "k8s-w1": image.path})
    r = piimg("flash", str(target), "--yes", "--force")
    assert r.exit_code != 0 and "k8s-master, k8s-w1" in r.stderr and "--node" in r.stderr
    r = piimg("flash", "--node", "k8s-w2", str(target), "--yes", "--force")
    assert r.exit_code != 0 and "k8s-w2" in r.stderr
    r = piimg("flash", "--node", "k8s-w1", str(target), "--yes", "--force")
    assert r.exit_code == 0, r
    assert read_at(target, 0, 512) == read_at(image.path, 0, 512)


def test_confirmation_declined_writes_nothing(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", str(image.path), str(target), "--force", input="n\n")
    # a deliberate no is not an error (usability audit S15; balena's "Aborted image flash" exits 0 too)
    assert r.exit_code == 0 and f"not flashed; nothing was written to {target}" in r.stderr
    assert str(target) in r.stderr  # the prompt showed the target
    assert read_at(target, 0, 4096) == PATTERN


def test_no_answer_on_a_non_terminal_says_yes_is_needed(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", str(image.path), str(target), "--force")  # stdin at EOF, as under cron or a pipe
    assert r.exit_code == 1, r
    assert "error: no answer" in r.stderr and "nothing was written" in r.stderr and "hint: add --yes" in r.stderr
    assert "aborted" not in r.stderr
    assert read_at(target, 0, 4096) == PATTERN


def test_new_file_target_is_private(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    # a built image carries the k3s token: a file made by flash is not world-readable
    target = tmp_path / "card.img"
    r = piimg("flash", str(image.path), str(target), "--force", "--yes")
    assert r.exit_code == 0, r
    assert target.stat().st_mode & 0o077 == 0


def test_refusal_happens_before_anything_is_written(tmp_path: Path, image: GeneratedImage) -> None:
    devices = LinuxDevices()
    calls: list[str] = []

    def confirm(device: object) -> bool:
        calls.append("asked")
        return True

    with pytest.raises(UnsafeTarget, match="no such device"):
        verb.flash(image.path, "/dev/piimg-test-nonexistent", devices=devices, confirm=confirm)
    assert not Path("/dev/piimg-test-nonexistent").exists() and calls == []



def test_empty_or_truncated_image_refused(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    empty = tmp_path / "empty.img"
    empty.touch()
    truncated = tmp_path / "truncated.img"
    truncated.write_bytes(read_at(image.path, 0, image.boot_offset + MiB))  # a download cut short
    for bad, words in ((empty, "is empty"), (truncated, "beyond the end of the image")):
        r = piimg("flash", str(bad), str(target), "--yes", "--force")
        assert r.exit_code == 1 and r.stderr.startswith(f"error: {bad}: ") and words in r.stderr, r
        assert "Traceback" not in r.output
    assert read_at(target, 0, 4096) == PATTERN


def test_image_onto_itself_refused(image: GeneratedImage, piimg: Any, project: Path) -> None:
    before = read_at(image.path, 0, 4096)
    r = piimg("flash", str(image.path), str(image.path), "--yes", "--force")
    assert r.exit_code == 3 and "is the image itself" in r.stderr, r
    assert read_at(image.path, 0, 4096) == before


def test_compressed_image(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    """A compressed image (gzip here: fast to make) is decompressed into the cache and flashed."""
    packed = tmp_path / "pi.img.gz"
    with open(packed, "wb") as out:
        subprocess.run(["gzip", "-1", "-c", str(image.path)], stdout=out, check=True)
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", str(packed), str(target), "--yes", "--force")
    assert r.exit_code == 0, r
    assert "gzip-compressed" in r.stderr
    check_card(image, target, tmp_path)


def test_device_in_use_is_refused(image: GeneratedImage, make_loop: Any) -> None:
    """O_EXCL: while someone else holds the disk exclusively (a mount does), nothing is written."""
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    holder = os.open(loop.device, os.O_RDONLY | os.O_EXCL)
    try:
        with pytest.raises(UnsafeTarget, match="busy"):
            write.write_image(image.path, loop.device, blockmap.compute_for(image.path))
    finally:
        os.close(holder)
    assert read_at(loop.backing, 0, MiB) == pattern_at(0, MiB)


class _FakeMacCard:
    """A Devices double: a 'card' that is really a file in tmp_path, as macOS would describe it."""

    dev_root = "/dev"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[str] = []
        self.mounted = True

    def discover(self, path: str) -> Device:
        mounts = (Mount("disk4s1", "/Volumes/bootfs"),) if self.mounted else ()
        return Device(
            path, "block", write_path=str(self.path), whole_disk_path="/dev/disk4", name="disk4", size=CARD,
            model="SD Card Reader", removable=True, mounted=mounts, platform="darwin",
        )

    def unmount(self, device: Device) -> None:
        self.calls.append("unmount")
        self.mounted = False

    def eject(self, device: Device) -> None:
        self.calls.append("eject")


@pytest.mark.parametrize("eject", [True, False])
def test_mac_flow_unmounts_writes_and_ejects(image: GeneratedImage, tmp_path: Path, eject: bool) -> None:
    card = tmp_path / "rdisk4"
    prefill(card, CARD)
    devices = _FakeMacCard(card)
    asked: list[Device] = []
    result = verb.flash(
        image.path, "/dev/rdisk4", devices=devices, confirm=lambda d: asked.append(d) is None, eject=eject
    )
    assert result.verified and asked[0].mounted
    assert devices.calls == (["unmount", "eject"] if eject else ["unmount"])
    check_card(image, card, tmp_path)


def test_gpt_image_keeps_its_backup_table(tmp_path: Path) -> None:
    if not have("sfdisk"):
        pytest.skip("sfdisk (fdisk) is not installed")
    img = make_image(tmp_path / "gpt.img", gpt=True, root_mib=64)
    bmap = blockmap.compute_for(img.path)
    size = img.path.stat().st_size
    assert bmap.ranges[-1].end == size  # the backup GPT after the last partition is mapped
    target = tmp_path / "card.img"
    prefill(target, size)
    write.write_image(img.path, target, bmap)
    assert read_at(target, size - 33 * 512, 33 * 512) == read_at(img.path, size - 33 * 512, 33 * 512)
    run_ok(["sfdisk", "--verify", str(target)])


def test_odd_sized_image_tail_is_written_and_verified(image: GeneratedImage, tmp_path: Path, make_loop: Any) -> None:
    """An image that is not a whole number of 4 KiB: the tail cannot go through O_DIRECT."""
    odd = tmp_path / "odd.img"
    odd.write_bytes(image.path.read_bytes() + b"tail" * 384)  # 1536 bytes after the last partition
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    bmap = blockmap.compute_for(odd)
    assert bmap.ranges[-1].end == odd.stat().st_size
    result = write.write_image(odd, loop.device, bmap)
    assert result.verified
    size = odd.stat().st_size
    assert read_at(loop.backing, size - 1536, 1536) == b"tail" * 384
    assert read_at(loop.backing, size, 4096) == pattern_at(size, 4096)


def test_flash_refuses_a_last_build_of_another_schema(image: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    # flash reads build/last.json through build's own reader (W4): schema 4 (newer than this piimg) is refused, not half-read
    target = tmp_path / "card.img"
    prefill(target, CARD)
    (project / "build").mkdir()
    (project / "build" / "last.json").write_text(json.dumps({"schema": 4, "nodes": {"k8s-master": {"image": str(image.path)}}}))
    r = piimg("flash", str(target), "--yes", "--force")
    assert r.exit_code == 1 and "last.json: unsupported schema 4" in r.stderr, r
    assert read_at(target, 0, 4096) == PATTERN


def test_truncated_check_does_not_depend_on_hint_words(image: GeneratedImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # W8: which images flash accepts follows the error type, not the wording of a hint
    from piimg.errors import ImageTruncated
    from piimg.image import partitions

    truncated = tmp_path / "truncated.img"
    truncated.write_bytes(read_at(image.path, 0, image.boot_offset + MiB))
    real = partitions.read_table

    def reworded(fh: Any, image_size: int | None = None) -> Any:
        try:
            return real(fh, image_size)
        except ImageTruncated as exc:
            raise ImageTruncated(exc.message, hint="fetch it once more") from None

    monkeypatch.setattr(partitions, "read_table", reworded)
    with pytest.raises(ImageTruncated, match="beyond the end of the image"):
        verb.check_image(str(truncated))
