"""File names on FAT: 8.3 short names, VFAT long names and their checksums.

A name that fits 8.3 and has a single case per part (``cmdline.txt``,
``README.TXT``, ``start4.elf``) is stored as one short entry; lower-case parts
are flagged in the NT reserved byte (0x08 base, 0x10 extension), which is what
Windows NT and mtools write and what Linux honours when reading. Every other
name gets VFAT long-name entries plus a unique short alias with a ``~N`` tail.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from piimg.errors import ImageError

LOWER_BASE: Final = 0x08
LOWER_EXT: Final = 0x10
CHARS_PER_LFN: Final = 13
MAX_LFN_UNITS: Final = 255

# Characters allowed in a short name besides A-Z and 0-9 (fatgen103, "FAT 8.3 names").
_SFN_SPECIAL: Final = frozenset("$%'-_@~`!(){}^#&")
# Characters that no FAT name may contain (fatgen103, "FAT Long Directory Entries").
_LFN_INVALID: Final = frozenset('"*/:<>?\\|')


def fold(name: str) -> str:
    """Case-insensitive key: per-character upper case, as FAT compares names."""
    out = []
    for ch in name:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


def validate_long_name(name: str) -> None:
    """Refuse a name FAT cannot store faithfully."""
    if not name or name in (".", ".."):
        raise ImageError(f"invalid FAT file name {name!r}")
    bad = sorted({c for c in name if c in _LFN_INVALID or ord(c) < 0x20})
    if bad:
        raise ImageError(f"invalid FAT file name {name!r}: it contains {''.join(bad)!r}")
    if name[-1] in ". ":
        raise ImageError(f"invalid FAT file name {name!r}: FAT drops trailing dots and spaces")
    if len(name.encode("utf-16-le", "surrogatepass")) // 2 > MAX_LFN_UNITS:
        raise ImageError(f"invalid FAT file name {name[:40]!r}...: longer than {MAX_LFN_UNITS} characters")


def _sfn_ok(ch: str) -> bool:
    return ("A" <= ch <= "Z") or ("a" <= ch <= "z") or ("0" <= ch <= "9") or ch in _SFN_SPECIAL


def _one_case(part: str) -> int:
    """0: no letters or upper case only; 1: lower case only; -1: mixed."""
    has_lower = any("a" <= c <= "z" for c in part)
    has_upper = any("A" <= c <= "Z" for c in part)
    if has_lower and has_upper:
        return -1
    return 1 if has_lower else 0


def plain_short_name(name: str) -> tuple[bytes, int] | None:
    """The 11-byte short name and NT case flags if ``name`` needs no long-name entries."""
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""
    elif not base or not ext or "." in base:
        return None
    if not (1 <= len(base) <= 8 and len(ext) <= 3):
        return None
    if not all(_sfn_ok(c) for c in base + ext):
        return None
    base_case, ext_case = _one_case(base), _one_case(ext)
    if base_case < 0 or ext_case < 0:
        return None
    flags = (LOWER_BASE if base_case else 0) | (LOWER_EXT if ext_case else 0)
    return (base.upper().ljust(8) + ext.upper().ljust(3)).encode("ascii"), flags


def _basis(name: str) -> tuple[str, str, bool]:
    """fatgen103 "basis-name generation": upper case, bad characters to ``_``,
    spaces and leading dots dropped, 8 + 3 characters. Returns base, extension
    and whether anything was lost (then a numeric tail is mandatory)."""
    lossy = False
    up = fold(name)
    if " " in up:
        up, lossy = up.replace(" ", ""), True
    stripped = up.lstrip(".")
    if stripped != up:
        up, lossy = stripped, True
    i = up.rfind(".")
    base, ext = (up[:i], up[i + 1 :]) if i >= 0 else (up, "")
    if "." in base:
        base, lossy = base.replace(".", ""), True

    def clean(part: str) -> str:
        nonlocal lossy
        out = []
        for c in part:
            if _sfn_ok(c) and not ("a" <= c <= "z"):
                out.append(c)
            else:
                out.append("_")
                lossy = True
        return "".join(out)

    base, ext = clean(base), clean(ext)
    if len(base) > 8 or len(ext) > 3:
        lossy = True
    if not base:
        base, lossy = "_", True
    return base[:8], ext[:3], lossy


def make_short_alias(name: str, taken: Container[bytes]) -> bytes:
    """A unique 11-byte short name for a long name: the basis itself if nothing was
    lost (``Makefile`` -> ``MAKEFILE``), else ``BASE~N`` with the smallest free N.
    Linux does the same for ~1..~9 and then switches to random hex tails; we keep
    counting (~10 .. ~999999, valid per fatgen103) so images are reproducible."""
    base, ext, lossy = _basis(name)
    ext_b = ext.ljust(3)
    if not lossy:
        cand = (base.ljust(8) + ext_b).encode("ascii")
        if cand not in taken:
            return cand
    for n in range(1, 1_000_000):
        tail = f"~{n}"
        cb = ((base[: 8 - len(tail)] + tail).ljust(8) + ext_b).encode("ascii")
        if cb not in taken:
            return cb
    raise ImageError(f"no free short name for {name!r} in its directory")


def display_short_name(raw: bytes, nt_flags: int) -> str:
    """The name a short entry shows, honouring the NT lower-case flags."""
    b = bytearray(raw[:11])
    if b[0] == 0x05:  # a leading 0xE5 byte is stored as 0x05 (0xE5 marks deleted)
        b[0] = 0xE5
    base = b[:8].decode("cp437").rstrip(" ")
    ext = b[8:11].decode("cp437").rstrip(" ")
    if nt_flags & LOWER_BASE:
        base = base.lower()
    if nt_flags & LOWER_EXT:
        ext = ext.lower()
    return f"{base}.{ext}" if ext else base


def lfn_checksum(short: bytes) -> int:
    """Checksum of an 11-byte short name, stored in each of its long-name entries
    (fatgen103, "ChkSum"): rotate right by one bit, add the next byte, modulo 256."""
    s = 0
    for byte in short[:11]:
        s = (((s & 1) << 7) + (s >> 1) + byte) & 0xFF
    return s


# Byte offsets of the 13 UTF-16 code units inside a long-name entry.
_LFN_OFFSETS: Final = (1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30)


def lfn_entries(name: str, short: bytes) -> list[bytes]:
    """The long-name entries for ``name``, in on-disk order (last part first)."""
    data = name.encode("utf-16-le", "surrogatepass")
    units = [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]
    count = -(-len(units) // CHARS_PER_LFN)
    if len(units) % CHARS_PER_LFN:
        units.append(0x0000)
    units += [0xFFFF] * (count * CHARS_PER_LFN - len(units))
    csum = lfn_checksum(short)
    out = []
    for seq in range(count, 0, -1):
        e = bytearray(32)
        e[0] = seq | (0x40 if seq == count else 0)
        e[11] = 0x0F
        e[13] = csum
        chunk = units[(seq - 1) * CHARS_PER_LFN : seq * CHARS_PER_LFN]
        for off, unit in zip(_LFN_OFFSETS, chunk, strict=True):
            e[off : off + 2] = unit.to_bytes(2, "little")
        out.append(bytes(e))
    return out


def lfn_units(entry: bytes) -> list[int]:
    """The 13 UTF-16 code units of one long-name entry."""
    return [int.from_bytes(entry[o : o + 2], "little") for o in _LFN_OFFSETS]


def decode_lfn(units: list[int]) -> str:
    if 0 in units:
        units = units[: units.index(0)]
    raw = b"".join(u.to_bytes(2, "little") for u in units)
    return raw.decode("utf-16-le", "replace")

