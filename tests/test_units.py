"""One size formatter (binary units, spelled out) and one SHA-256 pattern."""

from __future__ import annotations

import pytest

from piimg.units import human_rate, human_size, is_sha256


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (22 * 2**20, "22.0 MiB"),
        (2**30 - 1, "1024.0 MiB"),  # rounds in the unit it is in, never jumps a unit
        (2**30, "1.0 GiB"),
        (32 * 10**9, "29.8 GiB"),  # a "32 GB" card, as lsblk shows it
        (3 * 2**40, "3.0 TiB"),
        (2**60, "1048576.0 TiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_human_rate() -> None:
    assert human_rate(300 * 2**20, 2.0) == "150.0 MiB/s"
    assert human_rate(1024, 0.0) == "976.6 MiB/s"  # a zero duration counts as a microsecond


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        # sha256sum of the empty file (FIPS 180-4 test vector, as coreutils prints it)
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", True),
        ("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", False),  # callers lower-case first
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", False),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n", False),
        ("g" * 64, False),
    ],
)
def test_is_sha256(text: str, ok: bool) -> None:
    assert is_sha256(text) is ok
