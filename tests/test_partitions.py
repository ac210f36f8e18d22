from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from piimg.errors import ImageError, ImageTruncated
from piimg.image import partitions
from tests.imagegen import make_image, tools_available

needs_tools = pytest.mark.skipif(not tools_available(), reason="dosfstools/mtools/e2fsprogs not installed")


@pytest.mark.integration
@needs_tools
@pytest.mark.parametrize("align", [4, 8])
def test_finds_boot_and_root_by_table(tmp_path: Path, align: int) -> None:
    gen = make_image(tmp_path / "pi.img", align_mib=align)
    layout = partitions.open_layout(gen.path)
    assert layout.table.kind == "mbr"
    assert layout.boot.start == gen.boot_offset == align * 1024 * 1024
    assert layout.root.start == gen.root_offset
    assert layout.root.partuuid == f"{gen.disk_id}-02"


@pytest.mark.integration
@needs_tools
def test_gpt_layout(tmp_path: Path) -> None:
    gen = make_image(tmp_path / "pi.img", gpt=True)
    layout = partitions.open_layout(gen.path)
    assert layout.table.kind == "gpt"
    assert layout.boot.start == gen.boot_offset and layout.root.start == gen.root_offset
    assert layout.boot.name == "bootfs"


def _mbr(entries: list[tuple[int, int, int]]) -> bytes:
    mbr = bytearray(512)
    for i, (ptype, start, count) in enumerate(entries):
        mbr[0x1BE + 16 * i + 4] = ptype
        struct.pack_into("<II", mbr, 0x1BE + 16 * i + 8, start, count)
    mbr[510:] = b"\x55\xaa"
    return bytes(mbr)


def test_rejects_no_signature() -> None:
    with pytest.raises(ImageError, match="no partition table"):
        partitions.read_table(io.BytesIO(b"\0" * 4096))


def test_rejects_truncated_image() -> None:
    data = _mbr([(0x0C, 2048, 4096)]) + b"\0" * 4096
    with pytest.raises(ImageTruncated, match="beyond the end"):
        partitions.read_table(io.BytesIO(data))


def test_rejects_single_partition() -> None:
    data = _mbr([(0x0C, 1, 4)]) + b"\0" * 8192
    with pytest.raises(ImageError, match="expected partitions 1"):
        partitions.find_pi_layout(io.BytesIO(data))


def test_rejects_non_fat_boot() -> None:
    data = _mbr([(0x83, 1, 4), (0x83, 5, 4)]) + b"\0" * 8192
    with pytest.raises(ImageError, match="partition 1"):
        partitions.find_pi_layout(io.BytesIO(data))
