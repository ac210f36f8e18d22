"""Block map arithmetic and .bmap parsing (pure, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from piimg.errors import ImageError
from piimg.image.blockmap import MIN_GAP, BlockMap, Range, normalise, parse_bmap

DATA = Path(__file__).parent / "data" / "bmap"


def test_normalise_aligns_merges_and_clips() -> None:
    ranges = normalise([(100, 10), (5000, 100), (4096 * 10, 1), (10**6, 10**9)], 2 * 10**6, min_gap=0)
    assert ranges == (Range(0, 8192), Range(40960, 4096), Range(999424, 2 * 10**6 - 999424))


def test_small_gaps_are_merged_large_ones_kept() -> None:
    small = normalise([(0, 4096), (4096 + MIN_GAP - 4096, 4096)], 10**7)
    assert small == (Range(0, MIN_GAP + 4096),)
    large = normalise([(0, 4096), (4096 + MIN_GAP, 4096)], 10**7)
    assert len(large) == 2


def test_free_ranges_are_the_complement() -> None:
    bmap = BlockMap(100 * 4096, (Range(0, 4096), Range(8192, 4096)), "test")
    assert bmap.free_ranges() == [Range(4096, 4096), Range(12288, 100 * 4096 - 12288)]
    assert bmap.mapped_bytes == 8192


def test_parse_bmap_v1() -> None:
    bmap = parse_bmap(DATA / "v1.bmap", 1048576)
    assert bmap.ranges == (Range(0, 4 * 4096), Range(100 * 4096, 4096), Range(254 * 4096, 2 * 4096))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<nope/>", "not a .bmap file"),
        ("<bmap><ImageSize>x</ImageSize></bmap>", "ImageSize"),
        ("<bmap", "not a readable"),
        ("<bmap><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlockMap><Range>a-b</Range></BlockMap></bmap>", "bad <Range>"),
    ],
)
def test_parse_bmap_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "x.bmap"
    path.write_text(text)
    with pytest.raises(ImageError, match=match):
        parse_bmap(path, 8192)
