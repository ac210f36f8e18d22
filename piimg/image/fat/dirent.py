"""32-byte directory entries: parsing a directory and building new entries."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Final

from piimg.image.fat import names

ENTRY: Final = 32
ATTR_READ_ONLY: Final = 0x01
ATTR_HIDDEN: Final = 0x02
ATTR_SYSTEM: Final = 0x04
ATTR_VOLUME_ID: Final = 0x08
ATTR_DIRECTORY: Final = 0x10
ATTR_ARCHIVE: Final = 0x20
ATTR_LONG_NAME: Final = 0x0F
DELETED: Final = 0xE5
DOT: Final = b".          "
DOTDOT: Final = b"..         "


@dataclass
class Entry:
    """One file or directory as found in a directory."""

    name: str  # long name if present, else the short name as displayed
    short: bytes  # the 11 raw short-name bytes
    attr: int
    cluster: int
    size: int
    slot: int  # index of the short entry
    first_slot: int  # index of the first long-name entry (== slot without one)

    @property
    def is_dir(self) -> bool:
        return bool(self.attr & ATTR_DIRECTORY)

    @property
    def short_name(self) -> str:
        return names.display_short_name(self.short, 0)


def parse(data: bytes | bytearray) -> tuple[list[Entry], int]:
    """All live entries (``.`` and ``..`` included) and the number of slots in use
    (the index of the end-of-directory marker, or the total number of slots)."""
    entries: list[Entry] = []
    parts: dict[int, list[int]] = {}
    expect = 0  # next long-name sequence number expected; 0 = none pending
    count = 0
    csum = 0
    start = 0
    nslots = len(data) // ENTRY
    for i in range(nslots):
        e = data[i * ENTRY : (i + 1) * ENTRY]
        b0 = e[0]
        if b0 == 0:
            return entries, i
        if b0 == DELETED:
            expect = 0
            continue
        attr = e[11]
        if attr & 0x3F == ATTR_LONG_NAME:
            seq = b0 & 0x3F
            if b0 & 0x40 and 1 <= seq <= 20:
                parts, count, expect, csum, start = {}, seq, seq, e[13], i
            elif not (expect and seq == expect and e[13] == csum):
                expect = 0
                continue
            parts[seq] = names.lfn_units(bytes(e))
            expect = seq - 1 if seq > 1 else -1  # -1: complete, short entry must follow
            continue
        short = bytes(e[:11])
        hi, lo = struct.unpack_from("<H", e, 20)[0], struct.unpack_from("<H", e, 26)[0]
        (size,) = struct.unpack_from("<I", e, 28)
        if attr & ATTR_VOLUME_ID and not attr & ATTR_DIRECTORY:
            expect = 0
            continue
        if expect == -1 and names.lfn_checksum(short) == csum:
            units: list[int] = []
            for seq in range(1, count + 1):
                units += parts[seq]
            name, first = names.decode_lfn(units), start
        else:
            name, first = names.display_short_name(short, e[12]), i
        expect = 0
        entries.append(Entry(name, short, attr, (hi << 16) | lo, size, i, first))
    return entries, nslots


def dos_datetime(ts: float) -> tuple[int, int, int]:
    """(date, time, tenths) in FAT's local-time encoding, clamped to 1980..2107."""
    t = time.localtime(ts)
    year = min(max(t.tm_year, 1980), 2107)
    if year != t.tm_year:
        return (((year - 1980) << 9) | (1 << 5) | 1, 0, 0) if year == 1980 else ((127 << 9) | (12 << 5) | 31, 0xBF7D, 199)
    date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    sec = min(t.tm_sec, 59)
    tm = (t.tm_hour << 11) | (t.tm_min << 5) | (sec // 2)
    tenths = (sec % 2) * 100 + int((ts % 1) * 100)
    return date, tm, tenths


def make_entry(short: bytes, *, attr: int, nt_flags: int, cluster: int, size: int, ts: float) -> bytes:
    date, tm, tenths = dos_datetime(ts)
    return struct.pack(
        "<11sBBBHHHHHHHI",
        short,
        attr,
        nt_flags,
        tenths,
        tm,
        date,
        date,
        cluster >> 16,
        tm,
        date,
        cluster & 0xFFFF,
        size,
    )


def set_cluster_size_time(entry: bytearray, *, cluster: int, size: int, ts: float) -> None:
    """Point an existing short entry at new content (keeps name, case flags, creation time)."""
    date, tm, _ = dos_datetime(ts)
    struct.pack_into("<H", entry, 18, date)
    struct.pack_into("<H", entry, 20, cluster >> 16)
    struct.pack_into("<HHHI", entry, 22, tm, date, cluster & 0xFFFF, size)
