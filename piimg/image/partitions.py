"""MBR and GPT partition tables, read in pure Python (no pyparted, no root).

Raspberry Pi OS images are MBR with partition 1 FAT32 ``bootfs`` and
partition 2 ext4 ``rootfs``. Their alignment moved from 4 MiB to 8 MiB in
2025, so offsets always come from the table, never from constants. GPT is
read too (some third-party Pi images and CM4/CM5 setups use it).

References: the MBR layout (partition entries at 0x1BE, signature 0x55AA at
0x1FE, disk signature at 0x1B8, which Raspberry Pi OS uses as the PARTUUID
prefix ``XXXXXXXX-02``) and the UEFI specification, chapter 5 (GPT header at
LBA 1, CRC32 of header and entry array).
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Final

from piimg.errors import ImageError, ImageTruncated
from piimg.image import ext4map

SECTOR: Final = 512

#: MBR partition types that hold a FAT filesystem.
MBR_FAT_TYPES: Final = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF})
MBR_LINUX: Final = 0x83
MBR_GPT_PROTECTIVE: Final = 0xEE

GPT_BASIC_DATA: Final = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
GPT_ESP: Final = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
GPT_LINUX_FS: Final = "0fc63daf-8483-4772-8e79-3d69d8477de4"
GPT_FAT_TYPES: Final = frozenset({GPT_BASIC_DATA, GPT_ESP})


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based, as the kernel names it (p1, p2)
    start: int  # bytes from the start of the image
    size: int  # bytes
    type: str  # "0x0c" for MBR, a GUID for GPT
    partuuid: str  # what root=PARTUUID= refers to
    name: str = ""  # GPT partition name

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class PartitionTable:
    kind: str  # "mbr" | "gpt"
    disk_id: str  # MBR: 8 hex digits; GPT: disk GUID
    partitions: tuple[Partition, ...]

    def get(self, number: int) -> Partition | None:
        for part in self.partitions:
            if part.number == number:
                return part
        return None


@dataclass(frozen=True)
class PiLayout:
    """The two partitions piimg works with."""

    table: PartitionTable
    boot: Partition
    root: Partition


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    return data if data else b""


def _parse_mbr(sector: bytes, image_size: int) -> PartitionTable:
    disk_id = struct.unpack_from("<I", sector, 0x1B8)[0]
    parts = []
    for i in range(4):
        entry = sector[0x1BE + 16 * i : 0x1BE + 16 * (i + 1)]
        ptype = entry[4]
        lba, count = struct.unpack_from("<II", entry, 8)
        if ptype == 0 or count == 0:
            continue
        start, size = lba * SECTOR, count * SECTOR
        if start + size > image_size:
            raise ImageTruncated(
                f"partition {i + 1} ends at byte {start + size}, beyond the end of the image ({image_size} bytes)",
                hint="the image is truncated; download it again",
            )
        parts.append(Partition(i + 1, start, size, f"0x{ptype:02x}", f"{disk_id:08x}-{i + 1:02d}"))
    return PartitionTable("mbr", f"{disk_id:08x}", tuple(parts))


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _parse_gpt(fh: BinaryIO, image_size: int) -> PartitionTable:
    header = _read_at(fh, SECTOR, SECTOR)
    if header[:8] != b"EFI PART":
        raise ImageError("protective MBR found but no GPT header at LBA 1")
    hsize = struct.unpack_from("<I", header, 12)[0]
    crc = struct.unpack_from("<I", header, 16)[0]
    check = bytearray(header[:hsize])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(bytes(check)) != crc:
        raise ImageError("GPT header checksum mismatch: the partition table is damaged")
    disk_guid = _guid(header[56:72])
    entries_lba, count, esize, entries_crc = struct.unpack_from("<QIII", header, 72)
    table = _read_at(fh, entries_lba * SECTOR, count * esize)
    if zlib.crc32(table) != entries_crc:
        raise ImageError("GPT partition entry checksum mismatch: the partition table is damaged")
    parts = []
    for i in range(count):
        entry = table[i * esize : (i + 1) * esize]
        if entry[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        start, size = first * SECTOR, (last - first + 1) * SECTOR
        if start + size > image_size:
            raise ImageTruncated(f"partition {i + 1} ends beyond the end of the image", hint="the image is truncated")
        name = entry[56:128].decode("utf-16-le", "replace").rstrip("\0")
        parts.append(Partition(i + 1, start, size, _guid(entry[:16]), _guid(entry[16:32]), name))
    return PartitionTable("gpt", disk_guid, tuple(parts))


def read_table(fh: BinaryIO, image_size: int | None = None) -> PartitionTable:
    """Read the partition table of an image (or device) opened in binary mode."""
    if image_size is None:
        image_size = fh.seek(0, os.SEEK_END)
    sector = _read_at(fh, 0, SECTOR)
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise ImageError("no partition table (no MBR boot signature 55 AA in the first sector)")
    types = [sector[0x1BE + 16 * i + 4] for i in range(4)]
    if MBR_GPT_PROTECTIVE in types:
        return _parse_gpt(fh, image_size)
    # Raspberry Pi OS never uses logical partitions: an extended partition
    # (0x05, 0x0F, 0x85) is listed as present but not followed.
    return _parse_mbr(sector, image_size)


def _is_fat(fh: BinaryIO, part: Partition) -> bool:
    boot = _read_at(fh, part.start, SECTOR)
    return len(boot) == SECTOR and boot[510:512] == b"\x55\xaa" and (
        boot[82:87] == b"FAT32" or boot[54:59] in (b"FAT16", b"FAT12")
    )


def has_fat_type(part: Partition, kind: str) -> bool:
    """Whether the partition table marks ``part`` as a FAT partition (``kind``: ``mbr`` or ``gpt``)."""
    return part.type in GPT_FAT_TYPES if kind == "gpt" else int(part.type, 16) in MBR_FAT_TYPES


def find_pi_layout(fh: BinaryIO, image_size: int | None = None) -> PiLayout:
    """Locate partition 1 (FAT ``bootfs``) and partition 2 (ext ``rootfs``).

    Anything else is rejected with a sentence that says what was found.
    """
    table = read_table(fh, image_size)
    boot, root = table.get(1), table.get(2)
    if boot is None or root is None:
        found = ", ".join(f"{p.number} ({p.type})" for p in table.partitions) or "none"
        raise ImageError(
            f"not a Raspberry Pi OS layout: expected partitions 1 (FAT boot) and 2 (ext4 root), found {found}"
        )
    fat_type = has_fat_type(boot, table.kind)
    if not fat_type or not _is_fat(fh, boot):
        raise ImageError(f"not a Raspberry Pi OS layout: partition 1 (type {boot.type}) is not a FAT filesystem")
    if not ext4map.is_ext4(fh, root.start):
        raise ImageError(f"not a Raspberry Pi OS layout: partition 2 (type {root.type}) is not an ext2/3/4 filesystem")
    if boot.start < root.end and root.start < boot.end:
        raise ImageError("partitions 1 and 2 overlap: the partition table is damaged")
    return PiLayout(table, boot, root)


def open_layout(path: str | os.PathLike[str]) -> PiLayout:
    """:func:`find_pi_layout` for an image file by name."""
    try:
        with open(path, "rb") as fh:
            return find_pi_layout(fh)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except ImageError as exc:
        raise ImageError(f"{path}: {exc.message}", hint=exc.hint) from None


# ---------------------------------------------------------------- what a disk holds (before overwriting it)

#: ext2/3/4 superblock fields (Linux Documentation/filesystems/ext4/super.rst):
#: s_feature_compat at 0x5C (0x4: has_journal), s_feature_incompat at 0x60
#: (0x40: extents), s_volume_name at 0x78, 16 bytes.
_EXT_JOURNAL: Final = 0x4
_EXT_EXTENTS: Final = 0x40


def _filesystem(fh: BinaryIO, part: Partition) -> tuple[str, str]:
    """(type, label) of the file system at the start of ``part``; label "" when there is none.

    One aligned 4 KiB read: a macOS raw disk (/dev/rdiskN) refuses reads that
    do not start and end on a sector boundary.
    """
    head = _read_at(fh, part.start, 4096)
    boot = head[:SECTOR]
    if len(boot) == SECTOR and boot[510:512] == b"\x55\xaa":
        # FAT boot sector: BS_FilSysType and BS_VolLab sit at 0x52/0x47 on FAT32, 0x36/0x2B on FAT12/16
        if boot[82:87] == b"FAT32":
            return "FAT32", _fat_label(boot[71:82])
        if boot[54:59] in (b"FAT16", b"FAT12"):
            return boot[54:59].decode(), _fat_label(boot[43:54])
        if boot[3:11] == b"EXFAT   ":
            return "exFAT", ""
        if boot[3:11] == b"NTFS    ":
            return "NTFS", ""
    sb = head[1024:2048]
    if len(sb) == 1024 and struct.unpack_from("<H", sb, 0x38)[0] == ext4map.EXT4_MAGIC:
        compat, incompat = struct.unpack_from("<II", sb, 0x5C)
        kind = "ext4" if incompat & _EXT_EXTENTS else "ext3" if compat & _EXT_JOURNAL else "ext2"
        return kind, sb[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace")
    if head[4086:4096] == b"SWAPSPACE2":  # the last 10 bytes of the first 4 KiB page
        return "swap", ""
    return "", ""


def _fat_label(raw: bytes) -> str:
    label = raw.decode("ascii", "replace").strip()
    return "" if label == "NO NAME" else label


def describe_contents(fh: BinaryIO, size: int | None = None) -> list[str]:
    """What a disk or image holds, one phrase per partition, for the question
    before it is overwritten: ``bootfs (FAT32, 512.0 MiB)``. An empty list
    means no partition table; an unreadable one is said so."""
    from piimg.units import human_size

    if size is None:
        size = fh.seek(0, os.SEEK_END)
    first = _read_at(fh, 0, SECTOR)
    if len(first) < SECTOR or first[510:512] != b"\x55\xaa":
        return []
    try:
        table = read_table(fh, size)
    except ImageError as exc:
        return [f"a partition table piimg cannot read ({exc.message})"]
    phrases = []
    for part in table.partitions:
        kind, label = _filesystem(fh, part)
        kind = kind or (f"type {part.type}" if table.kind == "mbr" else "unknown file system")
        name = label or part.name or f"partition {part.number}"
        phrases.append(f"{name} ({kind}, {human_size(part.size)})")
    return phrases
