"""The block map of an image: which byte ranges must be written to the card.

A Raspberry Pi OS Lite image is ~2.7 GiB of which ~1.7 GiB are data; the rest
is free space in the root filesystem that nobody will ever read before
writing it. Writing only the mapped ranges is what makes bmaptool fast; piimg
computes the map from the image itself (no ``.bmap`` needed), or reads a
bmaptool ``.bmap`` file when one is given.

The rule is "everything not known to be free is written": the partition
table area, gaps between partitions, any partition piimg cannot read, and for
readable ones the FAT allocation (reserved area, FATs, allocated clusters) and
the ext4 used blocks (bitmaps).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from piimg.errors import ImageError
from piimg.image import ext4map
from piimg.image.partitions import Partition, has_fat_type, read_table

#: Ranges are widened to this alignment, so every write is a whole number of 4 KiB pages.
ALIGN: Final = 4096
#: Free gaps shorter than this are written anyway: one long write beats two short ones.
MIN_GAP: Final = 256 * 1024


@dataclass(frozen=True)
class Range:
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class BlockMap:
    """Sorted, non-overlapping ranges of the image that must be written."""

    image_size: int
    ranges: tuple[Range, ...]
    source: str  # "image" (computed) or the .bmap file's path

    @property
    def mapped_bytes(self) -> int:
        return sum(r.length for r in self.ranges)

    def free_ranges(self) -> list[Range]:
        """The complement: ranges that are never written."""
        out: list[Range] = []
        pos = 0
        for r in self.ranges:
            if r.start > pos:
                out.append(Range(pos, r.start - pos))
            pos = r.end
        if pos < self.image_size:
            out.append(Range(pos, self.image_size - pos))
        return out


def normalise(ranges: Iterable[tuple[int, int]], image_size: int, *, min_gap: int = MIN_GAP) -> tuple[Range, ...]:
    """Align outward to :data:`ALIGN`, clip to the image, merge overlaps and small gaps."""
    items = []
    for start, length in ranges:
        if length <= 0:
            continue
        a = start // ALIGN * ALIGN
        b = min(-(-(start + length) // ALIGN) * ALIGN, image_size)
        if a < b:
            items.append((a, b))
    items.sort()
    out: list[list[int]] = []
    for a, b in items:
        if out and a - out[-1][1] < max(min_gap, 1):  # overlapping, adjacent or a small gap
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple(Range(a, b - a) for a, b in out)


def _partition_ranges(fh: BinaryIO, part: Partition, kind: str) -> list[tuple[int, int]]:
    """Used ranges (image offsets) of one partition; all of it when its file system is unknown or unreadable."""
    whole = [(part.start, part.size)]
    if ext4map.is_ext4(fh, part.start):
        try:
            used = ext4map.used_block_ranges(fh, part.start, part.size)
        except ImageError:
            return whole
        return [(part.start + s, n) for s, n in used]
    if has_fat_type(part, kind):
        from piimg.image.fat import FatFS

        try:
            with FatFS.open(fh, offset=part.start, size=part.size, readonly=True) as fs:
                used = fs.allocated_ranges()
                fat_size = fs.geometry.size
        except ImageError:
            return whole
        ranges = [(part.start + s, n) for s, n in used]
        if fat_size < part.size:  # past the end of the file system: not known free
            ranges.append((part.start + fat_size, part.size - fat_size))
        return ranges
    return whole


def compute(fh: BinaryIO, image_size: int | None = None) -> BlockMap:
    """Compute the block map of the image open in ``fh``."""
    if image_size is None:
        image_size = fh.seek(0, os.SEEK_END)
    try:
        table = read_table(fh, image_size)
    except ImageError:
        return BlockMap(image_size, normalise([(0, image_size)], image_size), "image (no partition table)")
    ranges: list[tuple[int, int]] = []
    pos = 0
    for part in sorted(table.partitions, key=lambda p: p.start):
        if part.start > pos:
            ranges.append((pos, part.start - pos))  # table area and gaps: not known free
        ranges += _partition_ranges(fh, part, table.kind)
        pos = max(pos, part.end)
    if pos < image_size:
        ranges.append((pos, image_size - pos))
    return BlockMap(image_size, normalise(ranges, image_size), "image")


def compute_for(path: str | os.PathLike[str]) -> BlockMap:
    with open(path, "rb") as fh:
        return compute(fh)


def parse_bmap(path: str | os.PathLike[str], image_size: int) -> BlockMap:
    """Read a bmaptool ``.bmap`` file (format 1.x or 2.x) for an image of ``image_size`` bytes."""
    name = os.fspath(path)
    try:
        root = ET.parse(name).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ImageError(f"{name}: not a readable .bmap file ({exc})") from None
    if root.tag != "bmap":
        raise ImageError(f"{name}: not a .bmap file (root element <{root.tag}>)")

    def number(tag: str) -> int:
        node = root.find(tag)
        if node is None or not (node.text or "").strip().isdigit():
            raise ImageError(f"{name}: <{tag}> missing or not a number")
        return int((node.text or "").strip())

    bmap_image_size, block_size = number("ImageSize"), number("BlockSize")
    if bmap_image_size != image_size:
        raise ImageError(
            f"{name}: made for an image of {bmap_image_size} bytes, but the image has {image_size} bytes",
            hint="use the .bmap that belongs to this image, or none (piimg computes its own map)",
        )
    ranges: list[tuple[int, int]] = []
    block_map = root.find("BlockMap")
    for node in block_map.iter("Range") if block_map is not None else ():
        text = (node.text or "").strip()
        first, _, last = text.partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise ImageError(f"{name}: bad <Range> {text!r}") from None
        ranges.append((a * block_size, (b - a + 1) * block_size))
    return BlockMap(image_size, normalise(ranges, image_size, min_gap=0), str(Path(name)))
