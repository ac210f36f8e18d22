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


@pytest.mark.integration
@pytest.mark.skipif(not all(__import__("shutil").which(t) for t in ("sfdisk", "mkfs.vfat", "mkfs.ext2", "mkfs.ext3",
                                                                     "mkswap")),
                    reason="needs fdisk, dosfstools, e2fsprogs, util-linux")
def test_describe_contents_names_what_real_tools_made(tmp_path: Path) -> None:
    """The flash question's 'it holds: ...' (usability audit S15), against file systems made by
    sfdisk, mkfs.vfat (FAT16 and FAT32), mkfs.ext2/ext3 and mkswap, not by piimg."""
    import subprocess

    mib = 1024 * 1024
    disk = tmp_path / "card.img"
    with open(disk, "wb") as fh:
        fh.truncate(80 * mib)
    table = ("label: gpt\n" "start=2048, size=32768, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"firmware\"\n"
             "start=34816, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
             "start=55296, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
             "start=75776, size=16384, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n"
             "start=92160, size=20480, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n")
    subprocess.run(["sfdisk", "-q", str(disk)], input=table, text=True, check=True, capture_output=True)

    def part(name: str, sectors: int) -> Path:
        path = tmp_path / name
        with open(path, "wb") as fh:
            fh.truncate(sectors * 512)
        return path

    fat16, ext2, ext3, swap, fat32 = (part("p1", 32768), part("p2", 20480), part("p3", 20480), part("p4", 16384),
                                      part("p5", 20480))
    subprocess.run(["mkfs.vfat", "-F", "16", "-n", "FIRMWARE", str(fat16)], check=True, capture_output=True)
    subprocess.run(["mkfs.ext2", "-q", "-F", "-L", "old-root", str(ext2)], check=True, capture_output=True)
    subprocess.run(["mkfs.ext3", "-q", "-F", str(ext3)], check=True, capture_output=True)
    subprocess.run(["mkswap", str(swap)], check=True, capture_output=True)
    subprocess.run(["mkfs.vfat", "-F", "32", "-s", "1", str(fat32)], check=True, capture_output=True)  # no label
    with open(disk, "r+b") as out:
        for start, path in ((2048, fat16), (34816, ext2), (55296, ext3), (75776, swap), (92160, fat32)):
            out.seek(start * 512)
            out.write(path.read_bytes())
    with open(disk, "rb") as fh:
        assert partitions.describe_contents(fh) == [
            "FIRMWARE (FAT16, 16.0 MiB)", "old-root (ext2, 10.0 MiB)", "partition 3 (ext3, 10.0 MiB)",
            "partition 4 (swap, 8.0 MiB)", "partition 5 (FAT32, 10.0 MiB)",
        ]
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    with open(blank, "rb") as fh:
        assert partitions.describe_contents(fh) == []
