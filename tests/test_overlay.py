"""The overlay format: copy-on-write editing, the file layout, composition and its refusals.

The reference for "the composed image" is always a plain copy of the base
with the same writes applied by ordinary file I/O, never piimg's own reader.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from piimg.build.compose import export_image, locate_base, open_composed
from piimg.errors import ImageError
from piimg.fetch.cache import Cache
from piimg.image import overlay

SIZE = 3 * 1024 * 1024 + 512  # not a multiple of 4 KiB: the last block is partial


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.img"
    rnd = random.Random(7)
    with open(path, "wb") as fh:
        fh.write(rnd.randbytes(SIZE // 2))
        fh.truncate(SIZE)  # second half: a hole that reads as zeros
    return path


def _writes(seed: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(40):
        length = rnd.choice([1, 7, 512, 4096, 5000, 70000])
        offset = rnd.randrange(0, SIZE - length)
        out.append((offset, rnd.randbytes(length)))
    out.append((SIZE - 10, b"0123456789"))  # the partial last block
    out.append((4096 * 3, b"\0" * 4096))  # a block rewritten with what it holds already stays out
    return out


def _reference(base: Path, writes: list[tuple[int, bytes]], dest: Path) -> bytes:
    shutil.copy(base, dest)
    with open(dest, "r+b") as fh:
        for offset, data in writes:
            fh.seek(offset)
            fh.write(data)
    return dest.read_bytes()


def _make_overlay(base: Path, writes: list[tuple[int, bytes]], dest: Path) -> overlay.OverlayHeader:
    with overlay.CowImage(base) as cow:
        for offset, data in writes:
            cow.seek(offset)
            cow.write(data)
        changes = cow.changed_extents()
    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    with open(dest, "wb") as fh:
        return overlay.write_overlay(
            fh, {"image_size": SIZE, "base": overlay.base_identity(base, sha256=sha, name="base"), "node": "n1"}, changes
        )


def _random_reads(img: overlay.ComposedImage, expected: bytes, seed: int, count: int, longest: int) -> None:
    rnd = random.Random(seed)
    for _ in range(count):
        a = rnd.randrange(0, SIZE)
        view = memoryview(bytearray(rnd.randrange(1, longest)))
        n = img.pread_into(view, a)
        assert bytes(view[:n]) == expected[a : a + n]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cow_reads_its_own_writes_and_leaves_the_base_alone(base: Path, tmp_path: Path, seed: int) -> None:
    before = base.read_bytes()
    writes = _writes(seed)
    expected = _reference(base, writes, tmp_path / "ref.img")
    with overlay.CowImage(base) as cow:
        for offset, data in writes:
            cow.seek(offset)
            assert cow.write(data) == len(data)
        cow.seek(0)
        assert cow.read() == expected
        rnd = random.Random(seed)
        for _ in range(50):
            a = rnd.randrange(0, SIZE)
            n = rnd.randrange(0, 20000)
            cow.seek(a)
            assert cow.read(n) == expected[a : a + n]
        changes = cow.changed_extents()
        with pytest.raises(ImageError, match="past the end"):
            cow.seek(SIZE - 1)
            cow.write(b"xy")
    assert base.read_bytes() == before
    for offset, data in changes:
        assert offset % 4096 == 0 and (len(data) % 4096 == 0 or offset + len(data) == SIZE)
        assert data == expected[offset : offset + len(data)]
    changed_blocks = {i for off, d in changes for i in range(off // 4096, (off + len(d)) // 4096)}
    assert 3 not in changed_blocks or expected[3 * 4096 : 4 * 4096] != before[3 * 4096 : 4 * 4096]


@pytest.mark.parametrize("seed", [4, 5])
def test_composed_image_equals_the_base_with_the_writes_applied(base: Path, tmp_path: Path, seed: int) -> None:
    writes = _writes(seed)
    expected = _reference(base, writes, tmp_path / "ref.img")
    ovl = tmp_path / "n1.overlay"
    header = _make_overlay(base, writes, ovl)
    assert overlay.is_overlay(ovl) and not overlay.is_overlay(base)
    assert ovl.read_bytes().startswith(b"PIIMG OVERLAY 1\n{")
    assert header.data_bytes < SIZE // 2
    with overlay.ComposedImage.open(ovl, base) as img:
        assert img.size == SIZE
        buf = bytearray(SIZE + 100)
        assert img.pread_into(memoryview(buf), 0) == SIZE
        assert bytes(buf[:SIZE]) == expected
        _random_reads(img, expected, seed, 100, 30000)
        fh = img.fileobj()
        fh.seek(-100, io.SEEK_END)
        assert fh.read() == expected[-100:]
    # export: a real file equal to the reference, holes kept where the base had them
    out = tmp_path / "full.img"
    export_image(ovl, out, cache=Cache(tmp_path / "cache"))
    assert out.read_bytes() == expected
    assert out.stat().st_mode & 0o077 == 0


def test_both_file_views_seek_alike(base: Path, tmp_path: Path) -> None:
    # the copy-on-write view and the composed view answer seek/tell as io.BytesIO does, and both refuse
    # a position before the start (the composed one used to clamp it to 0 and read from the start instead)
    writes = _writes(6)
    expected = _reference(base, writes, tmp_path / "ref.img")
    ovl = tmp_path / "n1.overlay"
    _make_overlay(base, writes, ovl)
    moves = [(10, io.SEEK_SET), (5, io.SEEK_CUR), (-7, io.SEEK_END), (-3, io.SEEK_CUR), (SIZE + 9, io.SEEK_SET)]
    with overlay.ComposedImage.open(ovl, base) as img, overlay.CowImage(base) as cow:
        for view in (img.fileobj(), cow):
            ref = io.BytesIO(expected if view is not cow else base.read_bytes())
            for offset, whence in moves:
                assert view.seek(offset, whence) == ref.seek(offset, whence)
                assert view.tell() == ref.tell()
            view.seek(-7, io.SEEK_END)
            ref.seek(-7, io.SEEK_END)
            assert view.read(3) == ref.read(3)
            for offset, whence in [(-1, io.SEEK_SET), (-(SIZE + 1), io.SEEK_END), (-(SIZE + 1), io.SEEK_CUR)]:
                view.seek(SIZE - 7)
                with pytest.raises(ValueError, match="negative seek"):
                    view.seek(offset, whence)


def test_damaged_overlays_are_refused(base: Path, tmp_path: Path) -> None:
    ovl = tmp_path / "n1.overlay"
    _make_overlay(base, _writes(1), ovl)
    data = ovl.read_bytes()
    bad = tmp_path / "bad.overlay"
    bad.write_bytes(data[:-1])
    with pytest.raises(ImageError, match="truncated"):
        overlay.read_header(bad)
    with pytest.raises(ImageError, match="truncated"):
        overlay.verify(bad)
    flipped = bytearray(data)
    flipped[-5] ^= 1
    bad.write_bytes(bytes(flipped))
    overlay.read_header(bad)  # the header alone is fine: reading it does not read the data
    with pytest.raises(ImageError, match="checksum"):
        overlay.verify(bad)
    line_end = data.index(b"\n", 16)
    header = json.loads(data[16:line_end])
    header["extents"][0][0] += 1  # unaligned
    bad.write_bytes(data[:16] + json.dumps(header).encode() + data[line_end:])
    with pytest.raises(ImageError, match="bad extent"):
        overlay.read_header(bad)
    header["extents"][0][0] -= 1
    header["format"] = 9
    bad.write_bytes(data[:16] + json.dumps(header).encode() + data[line_end:])
    with pytest.raises(ImageError, match="format 9"):
        overlay.read_header(bad)


def test_a_changed_base_is_never_composed(base: Path, tmp_path: Path) -> None:
    ovl = tmp_path / "n1.overlay"
    _make_overlay(base, _writes(2), ovl)
    cache = Cache(tmp_path / "cache")
    header, _ = overlay.read_header(ovl)
    assert locate_base(header, overlay_name="n1", cache=cache) == base  # unchanged: no re-hash needed
    os.utime(base, ns=(0, 12345))  # touched but the same bytes: re-hashed, accepted
    assert locate_base(header, overlay_name="n1", cache=cache) == base
    with open(base, "r+b") as fh:
        fh.seek(100)
        fh.write(b"changed")
    with pytest.raises(ImageError, match=r"base image base .* is gone or changed"):
        open_composed(ovl, cache=cache)
    base.unlink()
    with pytest.raises(ImageError, match="gone or changed") as info:
        export_image(ovl, tmp_path / "x.img", cache=cache)
    assert info.value.hint == "run piimg build again (it fetches the base if needed)"
    assert not (tmp_path / "x.img").exists()


def test_the_base_is_found_in_the_cache_by_its_digest(base: Path, tmp_path: Path) -> None:
    ovl = tmp_path / "n1.overlay"
    writes = _writes(3)
    expected = _reference(base, writes, tmp_path / "ref.img")
    _make_overlay(base, writes, ovl)
    cache = Cache(tmp_path / "cache")
    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    from piimg.fetch.cache import CacheEntry

    with cache.new_entry("d" * 64) as tmp:
        shutil.copy(base, tmp / "image.img")
        cache.commit(tmp, CacheEntry(download_sha256="d" * 64, sha256=sha, size=SIZE, name="base", source="test"))
    base.rename(tmp_path / "moved.img")
    with open_composed(ovl, cache=cache) as img:
        assert img.base_path == str(cache.image_path("d" * 64))
        buf = bytearray(SIZE)
        img.pread_into(memoryview(buf), 0)
        assert bytes(buf) == expected


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_node_layer_over_a_shared_layer_composes_like_plain_writes(base: Path, tmp_path: Path, seed: int) -> None:
    """Base + shared + node, with node writes overlapping, splitting and extending the shared extents."""
    shared_writes, node_writes = _writes(seed), _writes(seed + 100)
    expected = _reference(base, shared_writes + node_writes, tmp_path / "ref.img")
    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    identity = overlay.base_identity(base, sha256=sha, name="base")
    with overlay.CowImage(base) as shared_cow:
        for offset, data in shared_writes:
            shared_cow.seek(offset)
            shared_cow.write(data)
        shared_changes = shared_cow.changed_extents()
        with overlay.CowImage(shared_cow) as node_cow:
            for offset, data in node_writes:
                node_cow.seek(offset)
                node_cow.write(data)
            node_cow.seek(0)
            assert node_cow.read() == expected
            node_changes = node_cow.changed_extents()
        shared_cow.seek(0)
        assert shared_cow.read() == _reference(base, shared_writes, tmp_path / "shared-ref.img")  # untouched by the node
    fields = {"image_size": SIZE, "base": identity, "layer": overlay.SHARED}
    shared = tmp_path / "shared.layer"
    with open(shared, "wb") as fh:
        overlay.write_overlay(fh, fields, shared_changes)
    file_sha = hashlib.sha256(shared.read_bytes()).hexdigest()
    assert overlay.file_sha256(fields, shared_changes) == file_sha == overlay.verify(shared).sha256
    ref = overlay.LayerRef(sha256=file_sha, size=shared.stat().st_size, name=shared.name, path=str(shared))
    node = tmp_path / "n1.overlay"
    with open(node, "wb") as fh:
        overlay.write_overlay(fh, {"image_size": SIZE, "base": identity, "node": "n1", "lower": ref}, node_changes)
    with overlay.ComposedImage.open(node, base, shared) as img:
        assert set(img.inputs) == {str(node), str(base), str(shared)}
        buf = bytearray(SIZE)
        assert img.pread_into(memoryview(buf), 0) == SIZE and bytes(buf) == expected
        _random_reads(img, expected, seed, 200, 70000)
    out = tmp_path / "full.img"
    export_image(node, out, cache=Cache(tmp_path / "cache"))
    assert out.read_bytes() == expected
    # without its shared layer, or with another one, nothing is composed
    with pytest.raises(ImageError, match="needs its shared layer"):
        overlay.ComposedImage.open(node, base)
    other = tmp_path / "other.layer"
    with open(other, "wb") as fh:
        overlay.write_overlay(fh, fields, shared_changes[1:])
    with pytest.raises(ImageError, match=r"other\.layer: not the shared layer .* \(SHA-256 differs\)"):
        overlay.ComposedImage.open(node, base, other)
    with pytest.raises(ImageError, match="is the layer shared by the nodes of a build"):
        overlay.ComposedImage.open(shared, base)


def test_a_format_1_overlay_is_still_composed(base: Path, tmp_path: Path) -> None:
    """What piimg wrote before shared layers: a node layer straight on its base, no ``layer``/``lower`` keys."""
    writes = _writes(9)
    expected = _reference(base, writes, tmp_path / "ref.img")
    ovl = tmp_path / "n1.overlay"
    _make_overlay(base, writes, ovl)
    data = ovl.read_bytes()
    line_end = data.index(b"\n", 16)
    header = json.loads(data[16:line_end])
    del header["layer"], header["lower"]
    header["format"] = 1
    line = json.dumps(header).encode() + b"\n"
    start = overlay.data_offset(line_end - 16 + 1)
    old = tmp_path / "old.overlay"
    old.write_bytes(overlay.MAGIC + line + bytes(overlay.data_offset(len(line)) - 16 - len(line)) + data[start:])
    with open_composed(old, cache=Cache(tmp_path / "cache")) as img:
        assert img.header.format == 1 and img.header.lower is None
        buf = bytearray(SIZE)
        img.pread_into(memoryview(buf), 0)
        assert bytes(buf) == expected
