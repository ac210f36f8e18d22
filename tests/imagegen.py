"""Generated test images: small raw "disk images" and their compressed forms."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

MIB = 1 << 20


def raw_image(size: int = 3 * MIB, *, seed: int = 1, trailing_zeros: bool = True) -> bytes:
    """Pseudo-random data blocks separated by zero runs (free space), like a small disk image."""
    rng = random.Random(seed)
    out = bytearray(size)
    pos = 4096
    while pos < size - (MIB // 2 if trailing_zeros else 0):
        n = rng.randint(1, 64) * 1024
        words = b" ".join(rng.choice((b"boot", b"kernel", b"ext4", b"pi", b"k3s", b"x" * 7)) for _ in range(n // 4))
        chunk = (words + rng.randbytes(n // 8))[:n]
        out[pos : pos + len(chunk)] = chunk
        pos += len(chunk) + rng.randint(0, 4) * 64 * 1024
    out[0:4] = b"\xeb\x3c\x90M"  # not a compression magic
    if not trailing_zeros:
        out[-1] = 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compress(data: bytes, fmt: str, *, multiblock: bool = False) -> bytes:
    """``fmt``: raw, xz, gz, zst, zip."""
    if fmt == "raw":
        return data
    if fmt == "xz":
        if multiblock and shutil.which("xz"):
            return subprocess.run(["xz", "-T2", "--block-size=256KiB", "-1", "-c"], input=data,
                                  capture_output=True, check=True).stdout
        return lzma.compress(data, preset=1)
    if fmt == "gz":
        return gzip.compress(data, compresslevel=1)
    if fmt == "zst":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress(data)
    if fmt == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("README.txt", "not the image\n")
            zf.writestr("2025-01-01-test.img", data)
        return buf.getvalue()
    raise ValueError(fmt)


EXT = {"raw": ".img", "xz": ".img.xz", "gz": ".img.gz", "zst": ".img.zst", "zip": ".zip"}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
