"""Streaming decompression of disk images into sparse files.

Formats are recognised by their magic bytes, not by the file name: ``.img``
(raw), ``.img.xz``, ``.img.gz``, ``.img.zst`` and ``.zip`` (the single
``.img`` member). Memory use is constant.

Raspberry Pi OS ``.img.xz`` files are made with ``xz -T0`` and hold many
independent blocks, so xz >= 5.4 can decode them in parallel: when the ``xz``
(``zstd``, ``pigz``) program is installed we read its output through a pipe,
and fall back to Python's ``lzma`` (``zstandard``, ``gzip``) otherwise.

Output is written sparse: runs of zero blocks become holes (we seek instead of
writing), so an image that is mostly free space costs little disk and later
steps (flash) can skip the holes. The SHA-256 of the decompressed bytes is
computed on the way, so nobody has to read the image twice.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import hashlib
import io
import lzma
import os
import queue
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from piimg import run
from piimg.errors import CommandFailed, ImageError, ImageTruncated
from piimg.progress import QUIET, Reporter

#: Read/process granularity. Large enough that per-chunk Python overhead is
#: negligible, small enough to stay cache friendly.
CHUNK: Final = 4 << 20
#: Granularity of hole detection inside a chunk that is not all zero.
#: ext4 free space in Pi OS images comes in large runs; 64 KiB keeps the
#: per-block Python work small (2 GiB = 32 K comparisons) at little disk cost.
HOLE_BLOCK: Final = 64 << 10

_ZERO_CHUNK: Final = bytes(CHUNK)
_ZERO_BLOCK: Final = bytes(HOLE_BLOCK)

class Format(enum.StrEnum):
    RAW = "raw"
    XZ = "xz"
    GZIP = "gzip"
    ZSTD = "zstd"
    ZIP = "zip"


_MAGIC: Final = (
    (b"\xfd7zXZ\x00", Format.XZ),
    (b"\x1f\x8b", Format.GZIP),
    (b"\x28\xb5\x2f\xfd", Format.ZSTD),
    (b"PK\x03\x04", Format.ZIP),
)


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The compression of ``path`` from its first bytes (raw when none matches)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return Format.RAW


# --------------------------------------------------------------------------- readers


class _ProcessReader(io.RawIOBase):
    """stdout of a decoder process as a readable stream; errors surface at EOF/close."""

    def __init__(self, argv: list[str], path: Path) -> None:
        super().__init__()
        self.argv = argv
        self.path = path
        self.proc = run.start(argv)
        assert self.proc.stdout is not None
        self._out: Any = self.proc.stdout
        _grow_pipe(self._out.fileno())
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._eof:
            return 0
        n: int | None = self._out.readinto(b)
        if not n:
            self._eof = True
            self._finish()
            return 0
        return n

    def _finish(self) -> None:
        err = run.finish(self.proc)
        if self.proc.returncode != 0:
            raise _decoder_failed(self.path, self.argv, CommandFailed(self.argv, self.proc.returncode, err))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        if not self.closed:
            run.finish(self.proc, kill=True)
        super().close()


#: What the decoders say when the compressed data stops before its end: xz 5.4
#: ("Unexpected end of input"), gzip/pigz ("unexpected end of file"), zstd 1.5
#: ("premature end"), Python's lzma and gzip (EOFError "Compressed file ended
#: before the end-of-stream marker was reached").
_TRUNCATED: Final = ("unexpected end of input", "unexpected end of file", "premature end",
                     "ended before the end-of-stream marker")
TRUNCATED_HINT: Final = ("the file is truncated (an interrupted download?): download it again; "
                         "piimg fetch resumes and verifies a download of image.os or image.url")


def _undecodable(message: str, reason: str) -> ImageError:
    """A decoder's failure; a cut-off file gets the hint to download it again."""
    if any(t in reason.lower() for t in _TRUNCATED):
        return ImageTruncated(message, hint=TRUNCATED_HINT)
    return ImageError(message)


def _decoder_failed(src: Path, argv: list[str], exc: CommandFailed) -> ImageError:
    return _undecodable(f"{src}: {Path(argv[0]).name} cannot decompress it: {exc.tail}", exc.tail)


def _grow_pipe(fd: int) -> None:
    """Ask Linux for a 1 MiB pipe: fewer, larger reads (a no-op elsewhere)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError, AttributeError):
        pass


class _CheckedReader(io.RawIOBase):
    """Wrap a Python decompressor so that corrupt data raises ImageError."""

    def __init__(self, inner: Any, path: Path, closers: tuple[Any, ...] = ()) -> None:
        super().__init__()
        self.inner = inner
        self.path = path
        self.closers = closers

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self.inner.read(len(b))
        except Exception as exc:  # lzma, gzip, zlib, zipfile and zstandard each raise their own types
            raise _undecodable(f"{self.path}: corrupt compressed data: {exc}", str(exc)) from exc
        n = len(data)
        memoryview(b)[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
            for c in self.closers:
                c.close()
        super().close()


def _external(fmt: Format) -> list[str] | None:
    """The decoder program for ``fmt`` found on PATH, or None: Python decodes it."""
    if fmt is Format.XZ and (xz := shutil.which("xz")):
        # -T0: parallel decoding of multi-block files (xz >= 5.4; older xz ignores it).
        return [xz, "-dc", "-T0", "-q"]
    if fmt is Format.ZSTD and (zstd := shutil.which("zstd")):
        return [zstd, "-dc", "-q"]
    if fmt is Format.GZIP and (pigz := shutil.which("pigz")):
        return [pigz, "-dc"]
    return None


def zip_member(zf: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    """The single ``.img`` member of a zip (or its only file)."""
    files = [i for i in zf.infolist() if not i.is_dir()]
    imgs = [i for i in files if i.filename.lower().endswith(".img")]
    if len(imgs) == 1:
        return imgs[0]
    if len(files) == 1:
        return files[0]
    names = ", ".join(i.filename for i in files[:5]) or "nothing"
    raise ImageError(f"{path}: expected exactly one .img file in the zip archive, found {names}")


def open_decompressed(path: str | os.PathLike[str]) -> io.BufferedReader:
    """A readable binary stream of the decompressed content of ``path``.

    Format by magic bytes; ``read(n)`` returns ``n`` bytes until the end.
    Decoder errors raise :class:`ImageError` (for an external decoder, at the
    end of the stream). Close it when done: closing early stops the decoder.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt is Format.RAW:
        return open(path, "rb")
    raw: io.RawIOBase
    if fmt is Format.ZIP:
        try:
            zf = zipfile.ZipFile(path)
            member = zip_member(zf, path)
            raw = _CheckedReader(zf.open(member), path, (zf,))
        except zipfile.BadZipFile as exc:
            raise ImageError(f"{path}: not a valid zip archive: {exc}") from exc
    elif (argv := _external(fmt)) is not None:
        raw = _ProcessReader([*argv, str(path)], path)
    else:
        inner: Any
        if fmt is Format.XZ:
            inner = lzma.LZMAFile(path, "rb")  # noqa: SIM115 -- owned by the returned reader
        elif fmt is Format.GZIP:
            inner = gzip.GzipFile(path, "rb")
        else:
            import zstandard

            fh = open(path, "rb")  # noqa: SIM115 -- closed by the stream reader (closefd)
            inner = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=True)
        raw = _CheckedReader(inner, path)
    return io.BufferedReader(raw, buffer_size=1 << 20)


def _decode_into_file(
    argv: list[str],
    src: Path,
    dst: Path,
    fmt: Format,
    reporter: Reporter,
    description: str,
    total: int | None,
    *,
    checksum: bool,
) -> Decompressed:
    """The decoder writes straight into ``dst``; we only follow it to hash.

    No byte goes through a pipe and Python's write path: xz and zstd make the
    file sparse themselves when their standard output is a regular file (xz:
    by default, see ``--no-sparse`` in xz(1); zstd: with ``--sparse``). Both
    write sequentially and only ever seek forward over zeros, so every byte
    below the file's current size is final: the hash follows behind them,
    reading what the page cache still holds (holes read as zeros).
    """
    if fmt is Format.ZSTD:
        argv = [*argv, "--sparse"]
    hasher = hashlib.sha256()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    pos = 0
    with open(dst, "wb") as out, open(dst, "rb", buffering=0) as follow:
        try:
            with run.spawn([*argv, str(src)], stdout=out) as proc, reporter.bar(description, total) as bar:
                while True:
                    running = proc.poll() is None
                    size = os.fstat(out.fileno()).st_size
                    while pos < size:
                        if checksum:
                            n = follow.readinto(view[: min(len(buf), size - pos)]) or 0
                            if n == 0:
                                break
                            hasher.update(view[:n])
                        else:
                            n = size - pos
                        pos += n
                        bar.update(n)
                    if not running:
                        break
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=0.05 if checksum else 0.25)
        except CommandFailed as exc:  # an interruption kills the decoder (run.spawn)
            raise _decoder_failed(src, argv, exc) from None
        size = os.fstat(out.fileno()).st_size
    if pos != size:
        raise ImageError(f"{src}: decompressed image changed while it was being hashed")
    if size == 0:
        raise ImageError(f"{src}: decompresses to an empty image")
    return Decompressed(dst, size, hasher.hexdigest() if checksum else "", fmt)


# --------------------------------------------------------------------------- sparse writer


class SparseWriter:
    """Write a stream to ``fd`` sequentially, seeking over zero blocks.

    Works on a ``bytearray`` because ``bytearray.startswith`` compares with
    memcmp without copying, while comparing a ``memoryview`` goes element by
    element (~40x slower).
    """

    def __init__(self, fd: int, *, sparse: bool = True) -> None:
        self.fd = fd
        self.pos = 0
        self.sparse = sparse

    def write(self, buf: bytearray, n: int) -> None:
        """Write the first ``n`` bytes of ``buf`` at the current position."""
        if not self.sparse:
            data = memoryview(buf)[:n]
            while len(data):
                data = data[os.write(self.fd, data) :]
            self.pos += n
            return
        if n == CHUNK and buf.startswith(_ZERO_CHUNK):
            self.pos += n
            return
        view = memoryview(buf)
        start = 0
        run_start = -1  # start of the pending run of non-zero blocks
        while start < n:
            end = start + HOLE_BLOCK
            if end <= n:
                zero = buf.startswith(_ZERO_BLOCK, start)
            else:
                end = n
                zero = buf.startswith(bytes(end - start), start, end)
            if zero:
                if run_start >= 0:
                    self._put(view[run_start:start], run_start)
                    run_start = -1
            elif run_start < 0:
                run_start = start
            start = end
        if run_start >= 0:
            self._put(view[run_start:n], run_start)
        self.pos += n

    def _put(self, data: memoryview, offset: int) -> None:
        pos = self.pos + offset
        while len(data):
            written = os.pwrite(self.fd, data, pos)
            data = data[written:]
            pos += written

    def finish(self) -> None:
        """Set the final size (a trailing hole counts too)."""
        if self.sparse:
            os.ftruncate(self.fd, self.pos)


@dataclass(frozen=True)
class Decompressed:
    path: Path
    size: int
    sha256: str  # "" when not computed (checksum=False)
    format: Format


def _fill(read: Callable[[memoryview], int], buf: memoryview) -> int:
    """Read until ``buf`` is full or the stream ends; bytes read."""
    got = 0
    total = len(buf)
    while got < total:
        n = read(buf[got:])
        if not n:
            break
        got += n
    return got


class _Prefetch:
    """Read the decoder's output in a thread, so decoding overlaps hashing and writing.

    ``depth`` buffers circulate between the reader thread and the consumer;
    memory stays at (depth + 1) * CHUNK.
    """

    def __init__(self, stream: io.BufferedReader, depth: int = 3) -> None:
        self.stream = stream
        self.free: queue.Queue[bytearray | None] = queue.Queue()
        for _ in range(depth):
            self.free.put(bytearray(CHUNK))
        self.full: queue.Queue[tuple[bytearray | None, int, BaseException | None]] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="piimg-decompress-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        read = self.stream.readinto
        try:
            while not self.stop.is_set():
                buf = self.free.get()
                if buf is None:
                    return
                n = _fill(read, memoryview(buf))  # type: ignore[arg-type]
                self.full.put((buf, n, None))
                if not n:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self.full.put((None, 0, exc))

    def __iter__(self) -> Iterator[tuple[bytearray, int]]:
        while True:
            buf, n, exc = self.full.get()
            if exc is not None:
                raise exc
            if buf is None or not n:
                return
            yield buf, n
            self.free.put(buf)

    def close(self) -> None:
        self.stop.set()
        self.free.put(None)
        if isinstance(self.stream.raw, _ProcessReader):
            self.stream.raw.kill()  # unblocks a read on the pipe
        self.thread.join()
        self.stream.close()


def decompress_to(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    reporter: Reporter = QUIET,
    *,
    expected_size: int | None = None,
    description: str | None = None,
    checksum: bool = True,
) -> Decompressed:
    """Decompress ``src`` into the sparse file ``dst`` (created or truncated).

    Returns the size and SHA-256 of the decompressed bytes (``checksum=False``
    skips the hash, about 1 s of CPU per 1.5 GiB, when nobody needs it). ``dst`` is left
    partially written on error: callers write to a temporary name
    (:func:`piimg.fsutil.atomic_path`). Holes are made only in a regular
    file: a device gets every byte, zeros included (its old content would
    show through a skipped block).
    """
    src = Path(src)
    dst = Path(dst)
    fmt = detect_format(src)
    hasher = hashlib.sha256()
    total = expected_size if expected_size is not None else (src.stat().st_size if fmt is Format.RAW else None)
    regular = not dst.exists() or dst.is_file()
    argv = _external(fmt)
    if regular and argv is not None:
        return _decode_into_file(
            argv, src, dst, fmt, reporter, description or f"decompressing {src.name}", total, checksum=checksum
        )
    chunks = _Prefetch(open_decompressed(src))
    try:
        fd = os.open(dst, os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if regular else 0), 0o644)
        try:
            writer = SparseWriter(fd, sparse=regular)
            with reporter.bar(description or f"decompressing {src.name}", total) as bar:
                for buf, n in chunks:
                    if checksum:
                        hasher.update(memoryview(buf)[:n])
                    writer.write(buf, n)
                    bar.update(n)
            writer.finish()
        finally:
            os.close(fd)
    except OSError as exc:
        raise ImageError(f"cannot decompress {src} to {dst}: {exc.strerror or exc}") from exc
    finally:
        chunks.close()
    if writer.pos == 0:
        raise ImageError(f"{src}: decompresses to an empty image")
    return Decompressed(dst, writer.pos, hasher.hexdigest() if checksum else "", fmt)
