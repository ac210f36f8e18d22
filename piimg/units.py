"""Facts written once: how sizes and durations are shown, what a SHA-256 digest looks like.

Sizes: binary units everywhere a user sees one (B, KiB, MiB, GiB, TiB, each
1024 times the last), spelled out, on text lines and on progress bars alike,
as bmaptool does. Cards are sold in decimal GB, so a "32 GB" card shows as
29.7 GiB: the same number ``lsblk`` and ``diskutil`` print.

Durations of minutes and more (``status --watch``) read like a clock:
``02:15``, ``1:02:05``.
"""

from __future__ import annotations

import re
from typing import Final

#: A hex SHA-256 digest as ``sha256sum`` prints it (lower case), for use inside larger patterns.
SHA256_PATTERN: Final = "[0-9a-f]{64}"
SHA256_RE: Final = re.compile(SHA256_PATTERN)

_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB")


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a SHA-256 hex digest (64 lower-case hex digits)."""
    return SHA256_RE.fullmatch(text) is not None


def human_size(size: float) -> str:
    """``1536`` -> ``1.5 KiB``; bytes below 1 KiB as a whole number (``512 B``)."""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(size)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(size: float, seconds: float) -> str:
    """Bytes per second as ``12.3 MiB/s`` (a zero duration counts as a microsecond)."""
    return f"{human_size(size / max(seconds, 1e-6))}/s"


def clock_time(seconds: float) -> str:
    """``135`` -> ``02:15``; from an hour on ``1:02:05`` (whole seconds, rounded down)."""
    hours, rest = divmod(max(int(seconds), 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
