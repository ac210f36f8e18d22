"""ext4 used-block map compared with e2fsprogs' own free-block lists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from piimg.errors import ImageError
from piimg.image import ext4map
from tests.conftest import have
from tests.imagegen import MiB, make_image, tools_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("dumpe2fs")), reason="needs dosfstools, mtools, e2fsprogs"),
]


def dumpe2fs_free_blocks(image: Path, offset: int) -> tuple[int, set[int]]:
    """Block size and the set of free blocks, as e2fsprogs computes them (BLOCK_UNINIT included)."""
    out = subprocess.run(
        ["dumpe2fs", f"{image}?offset={offset}"], capture_output=True, text=True, check=True
    ).stdout
    block_size = int(re.search(r"^Block size:\s+(\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    free: set[int] = set()
    for line in re.findall(r"^\s+Free blocks: (.*)$", out, re.M):
        for part in filter(None, (p.strip() for p in line.split(","))):
            a, _, b = part.partition("-")
            free.update(range(int(a), int(b or a) + 1))
    return block_size, free


def map_free_blocks(image: Path, offset: int, size: int, block_size: int) -> set[int]:
    with open(image, "rb") as fh:
        used = ext4map.used_block_ranges(fh, offset, size)
    for start, length in used:
        assert start % block_size == 0 and length % block_size == 0
    total = size // block_size
    used_blocks: set[int] = set()
    for start, length in used:
        used_blocks.update(range(start // block_size, (start + length) // block_size))
    return set(range(total)) - used_blocks


@pytest.mark.parametrize(
    ("root_mib", "fill_mib", "extra"),
    [
        (64, 0, []),  # 1 KiB blocks, first_data_block 1
        (300, 40, []),  # 1 KiB blocks, BLOCK_UNINIT groups with flex_bg
        (600, 100, ["-b", "4096"]),  # 4 KiB blocks
        (200, 20, ["-O", "^64bit", "-b", "4096"]),  # 32-byte descriptors
        (200, 20, ["-O", "^flex_bg", "-b", "1024"]),  # bitmaps spread over the groups
        (200, 20, ["-O", "^resize_inode,sparse_super2", "-b", "4096"]),
    ],
)
def test_free_blocks_match_dumpe2fs(tmp_path: Path, root_mib: int, fill_mib: int, extra: list[str]) -> None:
    img = make_image(tmp_path / "t.img", root_mib=root_mib, root_fill_mib=fill_mib)
    if extra:  # re-make the root filesystem with other features
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", *extra, "-E", f"offset={img.root_offset}", str(img.path), f"{root_mib * 1024}k"],
            check=True,
            capture_output=True,
        )
    bs, free = dumpe2fs_free_blocks(img.path, img.root_offset)
    assert free, "the generated filesystem should have free space"
    mine = map_free_blocks(img.path, img.root_offset, img.root_size, bs)
    # never call a used block free; and find (nearly) all free space
    assert mine <= free, f"blocks mapped as free but used: {sorted(mine - free)[:10]}"
    assert len(mine) == len(free)


def test_filled_root_maps_its_data(tmp_path: Path) -> None:
    img = make_image(tmp_path / "t.img", root_mib=128, root_fill_mib=60)
    with open(img.path, "rb") as fh:
        used = ext4map.used_block_ranges(fh, img.root_offset, img.root_size)
    total = sum(length for _, length in used)
    assert 60 * MiB < total < 100 * MiB


def test_partition_larger_than_filesystem_maps_the_tail(tmp_path: Path) -> None:
    img = make_image(tmp_path / "t.img", root_mib=64)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-E", f"offset={img.root_offset}", str(img.path), "48M"], check=True, capture_output=True
    )
    with open(img.path, "rb") as fh:
        used = ext4map.used_block_ranges(fh, img.root_offset, img.root_size)
    assert used[-1] == (48 * MiB, 16 * MiB) or used[-1][0] + used[-1][1] == 64 * MiB


def test_not_ext4_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "zero.img"
    path.write_bytes(bytes(8192))
    with open(path, "rb") as fh, pytest.raises(ImageError, match="no ext2/3/4 superblock"):
        ext4map.used_block_ranges(fh, 0, 8192)
