"""Which blocks of an ext2/3/4 filesystem hold data: read from its own bitmaps.

Flashing writes only these, so the free part of a 2 GiB root filesystem is
never written. The rule is "everything not known to be free is used": when
anything looks unusual (bigalloc, a descriptor pointing outside the
filesystem, a short read) the whole partition is reported as used.

Layout (kernel ``Documentation/filesystems/ext4/``): the superblock sits at
byte 1024; block group descriptors follow in the block after
``s_first_data_block`` (or, with META_BG, at the start of each meta group);
each descriptor names its group's block bitmap. A group flagged
BLOCK_UNINIT has no bitmap on disk: its used blocks are exactly the
superblock backup, the descriptor and reserved-GDT blocks, and any block
bitmaps, inode bitmaps and inode tables placed in it (with FLEX_BG those
belong to other groups too), as the kernel's ``ext4_init_block_bitmap``
computes it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Final

from piimg.errors import ImageError

EXT4_MAGIC: Final = 0xEF53

COMPAT_SPARSE_SUPER2: Final = 0x0200
INCOMPAT_META_BG: Final = 0x0010
INCOMPAT_64BIT: Final = 0x0080
RO_COMPAT_SPARSE_SUPER: Final = 0x0001
RO_COMPAT_BIGALLOC: Final = 0x0200
BG_BLOCK_UNINIT: Final = 0x0002


@dataclass(frozen=True)
class Ext4Super:
    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    desc_size: int
    reserved_gdt_blocks: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]

    @property
    def group_count(self) -> int:
        return -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)

    @property
    def descs_per_block(self) -> int:
        return self.block_size // self.desc_size

    @property
    def gdt_blocks(self) -> int:
        return -(-self.group_count // self.descs_per_block)

    def group_first_block(self, group: int) -> int:
        return self.first_data_block + group * self.blocks_per_group

    def has_super(self, group: int) -> bool:
        """Does this group carry a superblock backup (and, without META_BG, a GDT copy)?"""
        if group == 0:
            return True
        if self.feature_compat & COMPAT_SPARSE_SUPER2:
            return group in self.backup_bgs
        if group <= 1 or not self.feature_ro_compat & RO_COMPAT_SPARSE_SUPER:
            return True
        if group % 2 == 0:
            return False
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False


def is_ext4(fh: BinaryIO, offset: int) -> bool:
    """Whether an ext2/3/4 superblock (magic 0xEF53 at 0x38 of the block at +1024) starts at ``offset``."""
    fh.seek(offset + 1024 + 0x38)
    magic = fh.read(2)
    return len(magic) == 2 and struct.unpack("<H", magic)[0] == EXT4_MAGIC


def read_super(fh: BinaryIO, offset: int) -> Ext4Super:
    """The superblock of the filesystem starting at byte ``offset``."""
    fh.seek(offset + 1024)
    sb = fh.read(1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != EXT4_MAGIC:
        raise ImageError(f"no ext2/3/4 superblock at byte {offset}")
    (blocks_lo, first_data, log_block, blocks_per_group) = (
        struct.unpack_from("<I", sb, 0x04)[0],
        struct.unpack_from("<I", sb, 0x14)[0],
        struct.unpack_from("<I", sb, 0x18)[0],
        struct.unpack_from("<I", sb, 0x20)[0],
    )
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 0x5C)
    desc_size = 32
    blocks_hi = 0
    if incompat & INCOMPAT_64BIT:
        desc_size = struct.unpack_from("<H", sb, 0xFE)[0] or 32
        blocks_hi = struct.unpack_from("<I", sb, 0x150)[0]
    if log_block > 6 or blocks_per_group == 0 or desc_size < 32:
        raise ImageError(f"implausible ext4 superblock at byte {offset}")
    return Ext4Super(
        block_size=1024 << log_block,
        blocks_count=blocks_lo | (blocks_hi << 32),
        first_data_block=first_data,
        blocks_per_group=blocks_per_group,
        desc_size=desc_size,
        reserved_gdt_blocks=struct.unpack_from("<H", sb, 0xCE)[0],
        feature_compat=compat,
        feature_incompat=incompat,
        feature_ro_compat=ro_compat,
        first_meta_bg=struct.unpack_from("<I", sb, 0x104)[0],
        backup_bgs=struct.unpack_from("<II", sb, 0x24C),
    )


@dataclass(frozen=True)
class _Desc:
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    flags: int


def _gdt_block_location(sb: Ext4Super, index: int) -> int:
    """Block number of descriptor block ``index`` (primary copy)."""
    if sb.feature_incompat & INCOMPAT_META_BG and index >= sb.first_meta_bg:
        group = index * sb.descs_per_block
        return sb.group_first_block(group) + (1 if sb.has_super(group) else 0)
    return sb.first_data_block + 1 + index


def _read_descs(fh: BinaryIO, offset: int, sb: Ext4Super) -> list[_Desc]:
    descs: list[_Desc] = []
    wide = sb.desc_size >= 64
    for index in range(sb.gdt_blocks):
        fh.seek(offset + _gdt_block_location(sb, index) * sb.block_size)
        block = fh.read(sb.block_size)
        if len(block) < sb.block_size:
            raise ImageError("ext4 group descriptors beyond the end of the image")
        for i in range(sb.descs_per_block):
            if len(descs) == sb.group_count:
                break
            base = i * sb.desc_size
            bb, ib, it = struct.unpack_from("<III", block, base)
            flags = struct.unpack_from("<H", block, base + 0x12)[0]
            if wide:
                bb_hi, ib_hi, it_hi = struct.unpack_from("<III", block, base + 0x20)
                bb, ib, it = bb | bb_hi << 32, ib | ib_hi << 32, it | it_hi << 32
            descs.append(_Desc(bb, ib, it, flags))
    return descs


def _inode_table_blocks(fh: BinaryIO, offset: int) -> int:
    fh.seek(offset + 1024)
    sb = fh.read(0x60)
    inodes_per_group = struct.unpack_from("<I", sb, 0x28)[0]
    inode_size = struct.unpack_from("<H", sb, 0x58)[0] or 128
    log_block = struct.unpack_from("<I", sb, 0x18)[0]
    return int(-(-(inodes_per_group * inode_size) // (1024 << log_block)))


def _group_metadata(sb: Ext4Super, group: int) -> list[tuple[int, int]]:
    """Superblock backup, GDT and reserved GDT blocks of ``group`` as (first, count)."""
    first = sb.group_first_block(group)
    out: list[tuple[int, int]] = []
    if sb.has_super(group):
        out.append((first, 1 + sb.gdt_blocks + sb.reserved_gdt_blocks))
    return out


def used_block_ranges(fh: BinaryIO, offset: int, size: int) -> list[tuple[int, int]]:
    """Used byte ranges ``(start, length)`` of the ext filesystem in ``[offset, offset+size)``.

    Offsets are relative to the partition start. Space past the end of the
    filesystem but inside the partition counts as used (it is not known free).
    """
    sb = read_super(fh, offset)
    whole = [(0, size)]
    if sb.feature_ro_compat & RO_COMPAT_BIGALLOC:
        return whole  # cluster bitmaps: rare on Pi images, not worth the risk
    bs = sb.block_size
    if sb.blocks_count * bs > size:
        raise ImageError(f"ext4 filesystem ({sb.blocks_count * bs} bytes) is larger than its partition ({size} bytes)")
    descs = _read_descs(fh, offset, sb)
    itable_blocks = _inode_table_blocks(fh, offset)
    # Where every group's bitmaps and inode table live: needed for BLOCK_UNINIT groups.
    placed: list[tuple[int, int]] = []
    for d in descs:
        placed += [(d.block_bitmap, 1), (d.inode_bitmap, 1), (d.inode_table, itable_blocks)]
    for start, count in placed:
        if start + count > sb.blocks_count or start < sb.first_data_block:
            return whole
    used: list[tuple[int, int]] = []
    if sb.first_data_block:
        used.append((0, sb.first_data_block))  # block 0 of a 1 KiB-block fs holds the boot sector
    for group, desc in enumerate(descs):
        first = sb.group_first_block(group)
        nblocks = min(sb.blocks_per_group, sb.blocks_count - first)
        if desc.flags & BG_BLOCK_UNINIT:
            last = first + nblocks
            if sb.feature_incompat & INCOMPAT_META_BG:
                used.append((first, nblocks))  # descriptor copies are placed differently: keep it all
                continue
            used += _group_metadata(sb, group)
            used += [(max(s, first), min(s + c, last) - max(s, first)) for s, c in placed if s < last and s + c > first]
            continue
        fh.seek(offset + desc.block_bitmap * bs)
        bitmap = fh.read(-(-nblocks // 8))
        if len(bitmap) * 8 < nblocks:
            return whole
        used += [(first + s, c) for s, c in _bit_runs(bitmap, nblocks)]
    ranges = _merge((s * bs, c * bs) for s, c in used if c > 0)
    fs_end = sb.blocks_count * bs
    if fs_end < size:
        ranges = _merge([*ranges, (fs_end, size - fs_end)])
    return ranges


def _bit_runs(bitmap: bytes, nbits: int) -> list[tuple[int, int]]:
    """Runs of set bits (little-endian bit order, as ext4 stores them) as (first, count)."""
    runs: list[tuple[int, int]] = []
    value = int.from_bytes(bitmap, "little") & ((1 << nbits) - 1)
    pos = 0
    while value:
        # skip zeros
        tz = (value & -value).bit_length() - 1
        value >>= tz
        pos += tz
        # count ones
        ones = (~value & (value + 1)).bit_length() - 1
        runs.append((pos, ones))
        value >>= ones
        pos += ones
    return runs


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    items = sorted(ranges)
    out: list[tuple[int, int]] = []
    for start, length in items:
        if out and start <= out[-1][0] + out[-1][1]:
            prev_start, prev_len = out[-1]
            out[-1] = (prev_start, max(prev_len, start + length - prev_start))
        else:
            out.append((start, length))
    return out
