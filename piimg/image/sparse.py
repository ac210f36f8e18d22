"""Copy a (large, mostly empty) image file fast: reflink, else data ranges only.

Every node image starts as a copy of the cached base image. Copying 2-3 GB
per node would dominate a build, so, in order of preference:

1. a reflink (copy-on-write clone): ``FICLONE`` ioctl on Linux (btrfs, XFS,
   bcachefs, ZFS 2.2+), ``clonefile(2)`` on macOS (APFS). O(1), shares every
   block until the boot partition is edited.
2. ``os.copy_file_range`` over the data ranges found with
   ``SEEK_DATA``/``SEEK_HOLE``: holes stay holes, the kernel copies in place
   (and reflinks by itself on file systems that can; NFS does it server-side).
3. plain reads and writes of the data ranges, skipping all-zero blocks.

The destination always has the source's length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from piimg.errors import ImageError, os_hint

FICLONE: Final = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
CHUNK: Final = 8 * 1024 * 1024
_NOT_SUPPORTED: Final = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EBADF}
)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of the data (non-hole) regions; the whole file where holes are unknown."""
    seek_data = getattr(os, "SEEK_DATA", None)
    seek_hole = getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:
        if size:
            yield 0, size
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, seek_data)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if exc.errno in _NOT_SUPPORTED:
                yield pos, size - pos
                return
            raise
        end = min(os.lseek(fd, start, seek_hole), size)
        if end <= start:
            return
        yield start, end - start
        pos = end


def _reflink(src: Path, dst: Path) -> bool:
    """Clone ``src`` to the new file ``dst``; False when the file system cannot."""
    if sys.platform == "darwin":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if not hasattr(libc, "clonefile"):
            return False
        dst.unlink(missing_ok=True)  # clonefile refuses an existing destination
        return bool(libc.clonefile(os.fsencode(src), os.fsencode(dst), 0) == 0)
    if not sys.platform.startswith("linux"):
        return False
    with open(src, "rb") as fs, open(dst, "wb") as fd:
        try:
            fcntl.ioctl(fd.fileno(), FICLONE, fs.fileno())
        except OSError as exc:
            if exc.errno in _NOT_SUPPORTED:
                return False
            raise
    return True


def _copy_range(sfd: int, dfd: int, offset: int, length: int, *, use_cfr: bool) -> bool:
    """Copy one data range; returns whether copy_file_range is (still) usable."""
    end = offset + length
    if use_cfr and hasattr(os, "copy_file_range"):
        pos = offset
        try:
            while pos < end:
                n = os.copy_file_range(sfd, dfd, end - pos, pos, pos)
                if n == 0:
                    break
                pos += n
            if pos >= end:
                return True
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise
        offset = pos  # fall back for the rest
        use_cfr = False
    zero = bytes(CHUNK)
    pos = offset
    while pos < end:
        n = min(CHUNK, end - pos)
        block = os.pread(sfd, n, pos)
        if not block:
            break
        if block != zero[: len(block)]:
            os.pwrite(dfd, block, pos)
        pos += len(block)
    return use_cfr


def sparse_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    """Copy ``src`` to ``dst`` (created or truncated); returns the method used."""
    src, dst = Path(src), Path(dst)
    try:
        size = src.stat().st_size
        if _reflink(src, dst):
            return "reflink"
        with open(src, "rb") as fs, open(dst, "wb") as fd:
            sfd, dfd = fs.fileno(), fd.fileno()
            os.ftruncate(dfd, size)
            use_cfr = True
            for offset, length in data_ranges(sfd, size):
                use_cfr = _copy_range(sfd, dfd, offset, length, use_cfr=use_cfr)
        return "copy_file_range" if use_cfr and hasattr(os, "copy_file_range") else "sparse read/write"
    except OSError as exc:
        raise ImageError(f"cannot copy {src} to {dst}: {exc.strerror or exc}", hint=os_hint(exc)) from None
