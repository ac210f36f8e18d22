"""The writer's chunk plan: exact cover of the block map, the first MiB strictly last (pure, fast)."""

from __future__ import annotations

import mmap

from hypothesis import given, settings
from hypothesis import strategies as st

from piimg.flash import write
from piimg.image.blockmap import Range, normalise

MiB = 1024 * 1024


def test_plan_puts_the_first_mib_last() -> None:
    ranges = (Range(0, 3 * MiB), Range(8 * MiB, 20 * MiB))
    chunks = write.plan_chunks(ranges, chunk=8 * MiB)
    assert [(c.start, c.length) for c in chunks] == [
        (1 * MiB, 2 * MiB), (8 * MiB, 8 * MiB), (16 * MiB, 8 * MiB), (24 * MiB, 4 * MiB), (0, 1 * MiB),
    ]


@given(st.lists(st.tuples(st.integers(0, 64 * MiB), st.integers(1, 8 * MiB)), max_size=20))
def test_plan_covers_the_map_exactly(raw: list[tuple[int, int]]) -> None:
    ranges = normalise(raw, 80 * MiB)
    chunks = write.plan_chunks(ranges, chunk=2 * MiB)
    covered = sorted((c.start, c.start + c.length) for c in chunks)
    merged: list[list[int]] = []
    for a, b in covered:
        assert not merged or a >= merged[-1][1], "chunks overlap"
        if merged and a == merged[-1][1]:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    assert [(a, b - a) for a, b in merged] == [(r.start, r.length) for r in ranges]
    assert all(c.length <= 2 * MiB for c in chunks)
    assert all(c.start >= write.HEAD or c.start + c.length <= write.HEAD for c in chunks)
    seen_head = False
    for c in chunks:
        if c.start < write.HEAD:
            seen_head = True
        else:
            assert not seen_head, "a chunk after the first MiB was planned after the head"


@settings(deadline=None)  # reader threads: a busy 2-core CI runner can take longer than 200 ms
@given(st.integers(1, 40), st.integers(1, 5))
def test_pipeline_yields_every_chunk_with_its_own_data(count: int, ahead: int) -> None:
    chunks = [write._Chunk(i * 4096, 4096) for i in range(count)]

    def read(chunk: write._Chunk, buf: mmap.mmap) -> bytes | None:
        buf[: chunk.length] = (chunk.start // 4096 % 251).to_bytes(1, "little") * chunk.length
        return None

    got = [(c.start, bytes(view)) for c, view, _ in write._pipeline(chunks, read, ahead=ahead)]
    assert got == [(c.start, bytes([c.start // 4096 % 251]) * 4096) for c in chunks]
