"""The writer: mapped ranges only, first MiB last, fsync, read-back verification.

Why it is shaped like this:

* Only the ranges of the :class:`~piimg.image.blockmap.BlockMap` are
  written; free space is never touched (that is where bmaptool's speed comes
  from, and it spares the card's flash).
* The first MiB (partition table, boot sector, GPT header) is *cleared first*
  (zeros, fsync) and written last, after an fsync of everything else. A card
  that held an image before usually has a table pointing at the same offsets
  the new partitions are being written to: keeping it while those are half
  written gives a card that looks bootable and is not. So until the very end
  the card has no partition table at all, and an interruption says so
  (:class:`~piimg.errors.Interrupted` carries the card's state for the CLI).
  Raspberry Pi Imager also writes the first block last ("Writing first block
  (which we skipped at first)", raspberrypi/rpi-imager#1385).
* A target that does not exist yet (``--force`` and a new file name) is
  written under a temporary name beside it and renamed when written and
  verified: an interrupted or killed flash leaves nothing under its name.
* Reads of the source and writes to the target use large page-aligned buffers
  (``mmap``), with the next source chunk read (and hashed) in a helper thread
  while the current one is written. On Linux the target is opened with
  O_DIRECT when it allows it (no double buffering through the page cache) and
  with O_EXCL for block devices: the kernel refuses it while anything has the
  disk or one of its partitions mounted or claimed.
* Verification reads every written range back *from the device* and compares
  SHA-256 digests per chunk; reading through the page cache would only prove
  the cache holds what we wrote. Linux: O_DIRECT reads; when O_DIRECT is
  refused, BLKFLSBUF and POSIX_FADV_DONTNEED drop the cached pages first.
  macOS: F_NOCACHE on the raw device. A mismatch names the first bad byte.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Final, Protocol

from piimg.errors import FlashFailed, ImageError, Interrupted, NeedsRoot, UnsafeTarget, os_hint
from piimg.fsutil import atomic_path
from piimg.image.blockmap import BlockMap, Range
from piimg.image.overlay import pread_full
from piimg.progress import QUIET, Reporter
from piimg.units import human_rate, human_size

MiB: Final = 1024 * 1024
#: The partition table and boot sector live here; written last.
HEAD: Final = 1 * MiB
#: One I/O. Large enough to keep an SD card's controller busy, small enough for two in memory.
CHUNK: Final = 8 * MiB
#: O_DIRECT needs offsets and lengths in whole logical blocks (512 or 4096 bytes); a
#: chunk that is not a whole number of 4 KiB (an image's odd tail) goes through the cache.
DIRECT_ALIGN: Final = 4096
#: Read-back requests in flight: keeps a USB reader's or a loop device's queue busy.
VERIFY_AHEAD: Final = 3
BLKFLSBUF: Final = 0x1261  # linux/fs.h: flush a block device's buffer cache


class VerifyFailed(FlashFailed):
    """What was read back from the target differs from the image."""

    def __init__(self, target: str, offset: int, why: str = "") -> None:
        self.offset = offset
        super().__init__(
            f"verification failed: {target} differs from the image at byte {offset} (0x{offset:x})"
            + (f" ({why})" if why else ""),
            hint="the card may be faulty or counterfeit; try another card or reader",
        )


class Source(Protocol):
    """What is written: a plain image file, or a base + overlay composed on the fly
    (:class:`piimg.image.overlay.ComposedImage`)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def pread_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` from ``offset``; returns the byte count (short only at the end)."""


class FileSource:
    """An image file read with ``preadv``."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.size = os.fstat(fd).st_size

    def pread_into(self, view: memoryview, offset: int) -> int:
        return pread_full(self.fd, view, offset)


@dataclass(frozen=True)
class FlashResult:
    target: str
    bytes_written: int
    image_size: int
    write_seconds: float
    verify_seconds: float | None  # None when not verified

    @property
    def seconds(self) -> float:
        return self.write_seconds + (self.verify_seconds or 0.0)

    @property
    def verified(self) -> bool:
        return self.verify_seconds is not None

    def summary(self) -> str:
        text = (
            f"wrote {human_size(self.bytes_written)} of {human_size(self.image_size)} to {self.target} "
            f"in {self.write_seconds:.1f} s ({human_rate(self.bytes_written, self.write_seconds)})"
        )
        if self.verify_seconds is not None:
            text += f", verified in {self.verify_seconds:.1f} s ({human_rate(self.bytes_written, self.verify_seconds)})"
        else:
            text += ", not verified"
        return text


@dataclass(frozen=True)
class _Chunk:
    start: int
    length: int


def plan_chunks(ranges: tuple[Range, ...], *, chunk: int = CHUNK, head: int = HEAD) -> list[_Chunk]:
    """Split the mapped ranges into I/O chunks, everything below ``head`` moved to the end."""
    body: list[_Chunk] = []
    first: list[_Chunk] = []
    for r in ranges:
        pos = r.start
        while pos < r.end:
            limit = head if pos < head else r.end
            length = min(chunk, r.end - pos, limit - pos)
            (first if pos < head else body).append(_Chunk(pos, length))
            pos += length
    return body + first


def _aligned_buffer(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size)  # anonymous maps are page aligned, as O_DIRECT wants


def _open_target(path: str, *, exclusive: bool, direct: bool, write: bool) -> tuple[int, bool]:
    """Open ``path``; returns the fd and whether O_DIRECT is in effect."""
    flags = (os.O_WRONLY if write else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
    if exclusive and sys.platform.startswith("linux"):
        flags |= os.O_EXCL  # on a block device: EBUSY while mounted or claimed by anyone else
    o_direct = getattr(os, "O_DIRECT", 0)
    try:
        if direct and o_direct:
            try:
                return os.open(path, flags | o_direct), True
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: the filesystem does not do O_DIRECT
                    raise
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise UnsafeTarget(
                f"{path}: device is busy (mounted or in use by another program)",
                hint="unmount its partitions and close programs using it",
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise NeedsRoot(f"{path}: permission denied (writing a disk needs root)") from None
        if exc.errno == errno.EROFS:
            raise UnsafeTarget(f"{path}: device is read-only (write-protect switch?)") from None
        raise UnsafeTarget(f"{path}: cannot open: {exc.strerror}") from None
    if sys.platform == "darwin":
        fcntl.fcntl(fd, getattr(fcntl, "F_NOCACHE", 48), 1)
    return fd, False


def _pwrite_full(fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


def _drop_cache(fd: int, *, block_device: bool) -> None:
    """Make the next buffered read of ``fd`` come from the device, not from memory."""
    if block_device and sys.platform.startswith("linux"):
        try:
            fcntl.ioctl(fd, BLKFLSBUF)
        except OSError:
            pass
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _pipeline(
    chunks: list[_Chunk], read: Callable[[_Chunk, mmap.mmap], bytes | None], *, ahead: int = 1
) -> Iterator[tuple[_Chunk, memoryview, bytes | None]]:
    """Yield each chunk's buffer, filled (and hashed) by ``read`` in helper threads.

    Up to ``ahead`` chunks are read in parallel ahead of the one being used;
    the caller must be done with a yielded buffer before asking for the next.
    """
    if not chunks:
        return
    size = max(c.length for c in chunks)
    buffers = [_aligned_buffer(size) for _ in range(ahead + 1)]
    slots = len(buffers)
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        pending: dict[int, Future[bytes | None]] = {}
        for i in range(min(ahead, len(chunks))):
            pending[i] = pool.submit(read, chunks[i], buffers[i % slots])
        for i, chunk in enumerate(chunks):
            digest = pending.pop(i).result()
            nxt = i + ahead
            if nxt < len(chunks):
                # buffer nxt % slots was used by chunk i - 1, which the caller has finished with
                pending[nxt] = pool.submit(read, chunks[nxt], buffers[nxt % slots])
            yield chunk, memoryview(buffers[i % slots])[: chunk.length], digest


def write_image(
    image: str | os.PathLike[str] | Source,
    target: str | os.PathLike[str],
    block_map: BlockMap,
    *,
    verify: bool = True,
    reporter: Reporter = QUIET,
) -> FlashResult:
    """Write the mapped ranges of ``image`` to ``target`` and (by default) verify them.

    ``image`` is a path or an open :class:`Source` (a composed overlay).
    ``target`` must already have passed :mod:`piimg.flash.safety`. A regular
    file target is extended to the image size if it is shorter. The
    ``writing`` bar closes once everything is on the target (after the last
    fsync), before the ``verifying`` bar opens for the read-back.
    """
    target = os.fspath(target)
    if not isinstance(image, (str, os.PathLike)):
        return _write_source(image, target, block_map, verify=verify, reporter=reporter)
    image = os.fspath(image)
    try:
        fd = os.open(image, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"{image}: cannot open: {exc.strerror or exc}") from None
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return _write_source(FileSource(fd, image), target, block_map, verify=verify, reporter=reporter)
    finally:
        os.close(fd)


def _write_source(
    src: Source,
    target: str,
    block_map: BlockMap,
    *,
    verify: bool,
    reporter: Reporter,
) -> FlashResult:
    image = src.name
    if src.size != block_map.image_size:
        raise ImageError(f"{image}: has {src.size} bytes, the block map expects {block_map.image_size}")
    if not os.path.lexists(target):
        # a file flash makes itself: written under a temporary name, so nothing
        # half-written ever has the target's name (error, Ctrl-C, SIGTERM or kill -9)
        try:
            with atomic_path(target, suffix=".part") as tmp:
                result = _write_and_verify(src, image, str(tmp), block_map, verify=verify, reporter=reporter,
                                           progress=_Progress(target))
        except Interrupted as exc:
            raise exc.with_state(f"nothing was written to {target}") from None
        except KeyboardInterrupt:
            raise Interrupted(state=f"nothing was written to {target}") from None
        return replace(result, target=target)
    progress = _Progress(target)
    try:
        return _write_and_verify(src, image, target, block_map, verify=verify, reporter=reporter, progress=progress)
    except Interrupted as exc:
        raise exc.with_state(progress.state(block_map.image_size)) from None
    except KeyboardInterrupt:
        raise Interrupted(state=progress.state(block_map.image_size)) from None


@dataclass
class _Progress:
    """How far a flash got, to tell the user what state an interruption left the card in."""

    target: str
    head_cleared: bool = False
    written: int = 0
    complete: bool = False

    def state(self, image_size: int) -> str:
        if not self.head_cleared:
            return f"nothing was written to {self.target}"
        if not self.complete:
            return (
                f"{self.target} is incomplete ({human_size(self.written)} of {human_size(image_size)} written) "
                "and has no partition table, so it will not boot; run the same piimg flash again"
            )
        return f"{self.target} was written but not verified; run the same piimg flash again to be sure"


def _write_and_verify(
    src: Source,
    image: str,
    target: str,
    block_map: BlockMap,
    *,
    verify: bool,
    reporter: Reporter,
    progress: _Progress,
) -> FlashResult:
    try:
        st = os.stat(target)
        block_device = stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)
    except FileNotFoundError:
        block_device = False
    if not block_device:
        # A file target: create or extend it so the free ranges read back as zeros.
        # New files get mode 0600: a built image holds the cluster's k3s token.
        with open(target, "ab", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            if fh.seek(0, os.SEEK_END) < block_map.image_size:
                fh.truncate(block_map.image_size)
    chunks = plan_chunks(block_map.ranges)
    total = sum(c.length for c in chunks)
    digests: list[bytes] = []

    def read_source(chunk: _Chunk, buf: mmap.mmap) -> bytes | None:
        view = memoryview(buf)[: chunk.length]
        if src.pread_into(view, chunk.start) != chunk.length:
            raise ImageError(f"{image}: short read at byte {chunk.start} (was the image truncated?)")
        return hashlib.sha256(view).digest() if verify else None

    fd, direct = _open_target(target, exclusive=block_device, direct=True, write=True)
    buffered = -1
    start = time.monotonic()
    try:
        buffered = _clear_head(target, fd, direct, min(HEAD, block_map.image_size))
        progress.head_cleared = True
        with reporter.bar(f"writing {progress.target}", total) as bar:
            for index, (chunk, view, digest) in enumerate(_pipeline(chunks, read_source)):
                if index and chunk.start < HEAD and chunks[index - 1].start >= HEAD:
                    _sync(target, fd, buffered)  # everything else is on the card before the table is
                try:
                    if direct and chunk.length % DIRECT_ALIGN:
                        if buffered < 0:
                            buffered = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
                        _pwrite_full(buffered, view, chunk.start)
                    else:
                        _pwrite_full(fd, view, chunk.start)
                except OSError as exc:
                    raise FlashFailed(
                        f"{progress.target}: write failed at byte {chunk.start}: {exc.strerror or exc}",
                        hint=os_hint(exc) if block_device is False else "was the card removed? the card is incomplete: flash it again",
                    ) from None
                if digest is not None:
                    digests.append(digest)
                progress.written += chunk.length
                bar.update(chunk.length)
            _sync(target, fd, buffered)
            progress.complete = True
        write_seconds = time.monotonic() - start
        verify_seconds = None
        if verify:
            start = time.monotonic()
            _verify(target, chunks, digests, src, block_device=block_device, reporter=reporter)
            verify_seconds = time.monotonic() - start
    finally:
        if buffered >= 0:
            os.close(buffered)
        os.close(fd)
    return FlashResult(target, total, block_map.image_size, write_seconds, verify_seconds)


def _clear_head(target: str, fd: int, direct: bool, length: int) -> int:
    """Zero the first ``length`` bytes (the old partition table) and flush them
    before anything else is written. Returns a buffered fd if one was opened
    for an unaligned length (-1 otherwise)."""
    buffered = -1
    zeros = _aligned_buffer(max(length, 1))
    try:
        if direct and length % DIRECT_ALIGN:
            buffered = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            _pwrite_full(buffered, memoryview(zeros)[:length], 0)
        else:
            _pwrite_full(fd, memoryview(zeros)[:length], 0)
    except OSError as exc:
        if buffered >= 0:
            os.close(buffered)
        raise FlashFailed(
            f"{target}: write failed at byte 0: {exc.strerror or exc}",
            hint="was the card removed? flash it again",
        ) from None
    finally:
        zeros.close()
    _sync(target, fd, buffered)
    return buffered


def _sync(target: str, *fds: int) -> None:
    try:
        for fd in fds:
            if fd >= 0:
                os.fsync(fd)
    except OSError as exc:
        raise FlashFailed(f"{target}: flushing the writes failed: {exc.strerror or exc}") from None


def _verify(
    target: str, chunks: list[_Chunk], digests: list[bytes], src: Source, *, block_device: bool, reporter: Reporter
) -> None:
    fd, direct = _open_target(target, exclusive=False, direct=True, write=False)
    buffered = -1
    try:
        if not direct:
            _drop_cache(fd, block_device=block_device)
        if direct and any(c.length % DIRECT_ALIGN for c in chunks):
            buffered = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            _drop_cache(buffered, block_device=block_device)

        def read_device(chunk: _Chunk, buf: mmap.mmap) -> bytes | None:
            view = memoryview(buf)[: chunk.length]
            use = buffered if direct and chunk.length % DIRECT_ALIGN else fd
            try:
                got = pread_full(use, view, chunk.start)
            except OSError as exc:
                raise VerifyFailed(target, chunk.start, f"reading it back failed: {exc.strerror or exc}") from None
            if got != chunk.length:
                view[got:] = bytes(chunk.length - got)  # a short device: compare as zeros
            return hashlib.sha256(view).digest()

        with reporter.bar(f"verifying {target}", sum(c.length for c in chunks)) as bar:
            for (chunk, view, digest), expected in zip(_pipeline(chunks, read_device, ahead=VERIFY_AHEAD), digests, strict=True):
                if digest != expected:
                    raise VerifyFailed(target, chunk.start + _first_difference(src, chunk, view))
                bar.update(chunk.length)
    finally:
        if buffered >= 0:
            os.close(buffered)
        os.close(fd)


def _first_difference(src: Source, chunk: _Chunk, device_data: memoryview) -> int:
    """Offset within ``chunk`` of the first byte that differs from the source."""
    buf = bytearray(chunk.length)
    expected = bytes(buf[: src.pread_into(memoryview(buf), chunk.start)])
    got = bytes(device_data)
    if len(expected) != len(got):
        return min(len(expected), len(got))
    step = 4096
    for pos in range(0, len(got), step):
        if expected[pos : pos + step] != got[pos : pos + step]:
            for i in range(pos, min(pos + step, len(got))):
                if expected[i] != got[i]:
                    return i
    return 0

