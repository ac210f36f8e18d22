"""Per-node overlays: only the blocks in which a node's image differs from its base.

A node image is the cached base image with a few hundred KiB of its boot
partition changed. Writing a full copy per node costs the base's size in disk
space and copy time on file systems without reflinks (ext4). An overlay file
holds just the changed 4 KiB blocks and names the base by SHA-256; flashing
composes base + overlay on the fly (:class:`ComposedImage`), and
:func:`apply_extents` turns base + overlay into a full image for other tools.

File layout (version 1)::

    PIIMG OVERLAY 1\\n          16 bytes of magic
    {"format": 1, ...}\\n        one line of JSON: the header (below)
    NUL padding                 up to the next multiple of 4096: the data offset
    extent data                 each extent's bytes, in header order, back to back

Header keys: ``image_size`` (bytes of the composed image), ``base``
(``sha256``, ``size``, ``name``, ``path``, ``mtime_ns``: the base's identity
and where it was at build time), ``extents`` (``[[offset, length], ...]``,
sorted, non-overlapping, 4 KiB aligned, inside the image; only an extent
that ends with the image may have a partial last block), ``data_sha256``
(SHA-256 of all extent data, checked on open) and ``node`` (informational).

Why not qcow2 with a backing file: it would need L1/L2 tables and refcounts
for what is a list of a few extents, and every consumer (flash, export) is
piimg itself; ``piimg export`` writes a plain image for everything else.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from piimg.errors import ImageError

MAGIC: Final = b"PIIMG OVERLAY 1\n"
FORMAT: Final = 1
BLOCK: Final = 4096
#: A header line longer than this is not ours (a million extents would be ~20 MB).
MAX_HEADER: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class BaseIdentity:
    """The base image an overlay applies to."""

    sha256: str
    size: int
    name: str = ""
    path: str = ""  # where it was at build time (absolute)
    mtime_ns: int = 0  # with size: the cheap "unchanged since the build" check


@dataclass(frozen=True)
class OverlayHeader:
    image_size: int
    base: BaseIdentity
    extents: tuple[tuple[int, int], ...]
    data_sha256: str
    node: str = ""
    format: int = FORMAT

    @property
    def data_bytes(self) -> int:
        return sum(length for _, length in self.extents)

    def to_line(self) -> bytes:
        data = asdict(self)
        data["extents"] = [list(e) for e in self.extents]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def data_offset(header_line_length: int) -> int:
    """Where the extent data starts: after magic and header, rounded up to :data:`BLOCK`."""
    end = len(MAGIC) + header_line_length
    return -(-end // BLOCK) * BLOCK


def is_overlay(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _bad(name: str, why: str) -> ImageError:
    return ImageError(f"{name}: not a usable piimg overlay: {why}", hint="run piimg build again")


def _parse_header(name: str, line: bytes) -> OverlayHeader:
    try:
        data: Any = json.loads(line)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        if data.get("format") != FORMAT:
            raise _bad(name, f"format {data.get('format')!r} (this piimg reads format {FORMAT})")
        base = BaseIdentity(**data["base"])
        extents = tuple((int(a), int(n)) for a, n in data["extents"])
        header = OverlayHeader(
            image_size=int(data["image_size"]),
            base=base,
            extents=extents,
            data_sha256=str(data["data_sha256"]),
            node=str(data.get("node", "")),
        )
    except ImageError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(name, f"damaged header ({exc})") from None
    pos = 0
    for start, length in header.extents:
        end = start + length
        if start < pos or length <= 0 or start % BLOCK or end > header.image_size or (end % BLOCK and end != header.image_size):
            raise _bad(name, f"bad extent {start}+{length}")
        pos = end
    if header.base.size != header.image_size:
        raise _bad(name, f"image size {header.image_size} differs from the base's {header.base.size}")
    return header


def read_header(path: str | os.PathLike[str]) -> tuple[OverlayHeader, int]:
    """The header and the data offset; the extent data is checked against ``data_sha256``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise _bad(name, "no overlay magic")
            line = fh.readline(MAX_HEADER)
            if not line.endswith(b"\n"):
                raise _bad(name, "header not terminated")
            header = _parse_header(name, line)
            offset = data_offset(len(line))
            fh.seek(offset)
            digest = hashlib.sha256()
            left = header.data_bytes
            while left:
                chunk = fh.read(min(left, 8 << 20))
                if not chunk:
                    raise _bad(name, "truncated (extent data missing)")
                digest.update(chunk)
                left -= len(chunk)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such overlay file", hint="run piimg build again") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if digest.hexdigest() != header.data_sha256:
        raise _bad(name, "the extent data does not match its checksum (damaged file)")
    return header, offset


def write_overlay(fh: io.BufferedIOBase | Any, header_fields: dict[str, Any], extents: list[tuple[int, bytes]]) -> OverlayHeader:
    """Write an overlay to the open binary file ``fh``: ``extents`` are (offset, data) pairs."""
    digest = hashlib.sha256()
    for _, data in extents:
        digest.update(data)
    header = OverlayHeader(
        extents=tuple((off, len(data)) for off, data in extents),
        data_sha256=digest.hexdigest(),
        **header_fields,
    )
    line = header.to_line()
    fh.write(MAGIC + line)
    fh.write(bytes(data_offset(len(line)) - len(MAGIC) - len(line)))
    for _, data in extents:
        fh.write(data)
    return header


class CowImage(io.RawIOBase):
    """A file object over a base image that keeps every write in memory, per 4 KiB block.

    :class:`~piimg.image.fat.FatFS` edits the boot partition through it as if
    it were a copy of the image; :meth:`changed_extents` then gives the
    blocks that differ from the base. The base file is only read.
    """

    def __init__(self, base: str | os.PathLike[str]) -> None:
        super().__init__()
        self.name = os.fspath(base)
        try:
            self._fd = os.open(self.name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot open: {exc.strerror or exc}") from None
        self._size = os.fstat(self._fd).st_size
        self._blocks: dict[int, bytearray] = {}
        self._pos = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _base_block(self, index: int) -> bytes:
        data = os.pread(self._fd, BLOCK, index * BLOCK)
        return data + bytes(BLOCK - len(data))

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if not n:
            return 0
        got = 0
        while got < n:
            done = os.preadv(self._fd, [view[got:n]], self._pos + got)
            if done == 0:
                view[got:n] = bytes(n - got)  # past the base's data: zeros, as in a sparse file
                break
            got += done
        first, last = self._pos // BLOCK, (self._pos + n - 1) // BLOCK
        if self._blocks:
            for index in range(first, last + 1):
                block = self._blocks.get(index)
                if block is None:
                    continue
                a = max(index * BLOCK, self._pos)
                b_end = min((index + 1) * BLOCK, self._pos + n)
                view[a - self._pos : b_end - self._pos] = block[a - index * BLOCK : b_end - index * BLOCK]
        self._pos += n
        return n

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        end = self._pos + len(data)
        if end > self._size:
            raise ImageError(f"{self.name}: internal error: write past the end of the image ({end} > {self._size})")
        pos = self._pos
        while pos < end:
            index = pos // BLOCK
            block = self._blocks.get(index)
            if block is None:
                block = self._blocks[index] = bytearray(self._base_block(index))
            a = pos - index * BLOCK
            n = min(BLOCK - a, end - pos)
            block[a : a + n] = data[pos - self._pos : pos - self._pos + n]
            pos += n
        self._pos = end
        return len(data)

    def changed_extents(self) -> list[tuple[int, bytes]]:
        """(offset, data) of the runs of blocks that now differ from the base, merged and sorted."""
        out: list[tuple[int, bytearray]] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if bytes(block) == self._base_block(index):
                continue
            offset = index * BLOCK
            if out and out[-1][0] + len(out[-1][1]) == offset:
                out[-1][1].extend(block)
            else:
                out.append((offset, bytearray(block)))
        # an image whose size is not a multiple of 4 KiB: its last extent ends with the image
        return [(off, bytes(data[: self._size - off])) for off, data in out]

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@dataclass
class ComposedImage:
    """Base + overlay read as one image, without writing either.

    :meth:`pread_into` is what the flash writer reads through;
    :meth:`fileobj` gives a seekable file object for the block map and for
    reading the partition table.
    """

    overlay_path: str
    base_path: str
    header: OverlayHeader
    _data_offset: int
    _base_fd: int = -1
    _overlay_fd: int = -1
    _starts: list[int] = field(default_factory=list)
    _data_pos: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, overlay_path: str | os.PathLike[str], base_path: str | os.PathLike[str]) -> ComposedImage:
        header, offset = read_header(overlay_path)
        self = cls(os.fspath(overlay_path), os.fspath(base_path), header, offset)
        try:
            self._base_fd = os.open(self.base_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._overlay_fd = os.open(self.overlay_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self.close()
            raise ImageError(f"{exc.filename}: cannot open: {exc.strerror or exc}") from None
        size = os.fstat(self._base_fd).st_size
        if size != header.image_size:
            self.close()
            raise ImageError(
                f"{self.base_path}: has {size} bytes, the overlay {self.overlay_path} expects a base of {header.image_size}",
                hint="run piimg build again",
            )
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._base_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        pos = offset
        for start, length in header.extents:
            self._starts.append(start)
            self._data_pos.append(pos)
            pos += length
        return self

    @property
    def name(self) -> str:
        return self.overlay_path

    @property
    def size(self) -> int:
        return self.header.image_size

    def pread_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` with the composed image's bytes at ``offset``; returns the count (short at the end)."""
        n = max(0, min(len(view), self.size - offset))
        got = 0
        while got < n:
            done = os.preadv(self._base_fd, [view[got:n]], offset + got)
            if done == 0:
                view[got:n] = bytes(n - got)
                break
            got += done
        end = offset + n
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            start, length = self.header.extents[i]
            a, b = max(start, offset), min(start + length, end)
            if a < b:
                sub = view[a - offset : b - offset]
                if os.preadv(self._overlay_fd, [sub], self._data_pos[i] + (a - start)) != b - a:
                    raise ImageError(f"{self.overlay_path}: short read (was the overlay truncated?)")
            i += 1
        return n

    def fileobj(self) -> io.BufferedReader:
        return io.BufferedReader(_ComposedRaw(self), buffer_size=1 << 20)

    def close(self) -> None:
        for fd in (self._base_fd, self._overlay_fd):
            if fd >= 0:
                os.close(fd)
        self._base_fd = self._overlay_fd = -1

    def __enter__(self) -> ComposedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ComposedRaw(io.RawIOBase):
    def __init__(self, image: ComposedImage) -> None:
        super().__init__()
        self._image = image
        self._pos = 0
        self.name = image.name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._image.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        n = self._image.pread_into(memoryview(b).cast("B"), self._pos)
        self._pos += n
        return n


def apply_extents(fd: int, header: OverlayHeader, overlay_path: str | os.PathLike[str], offset: int) -> None:
    """Write the overlay's extents into ``fd`` (a copy of the base): the full node image."""
    with open(overlay_path, "rb") as src:
        src.seek(offset)
        for start, length in header.extents:
            data = src.read(length)
            if len(data) != length:
                raise ImageError(f"{overlay_path}: truncated (extent data missing)")
            done = 0
            while done < length:
                done += os.pwrite(fd, data[done:], start + done)


def extents_of(pairs: Iterable[tuple[int, bytes]]) -> list[tuple[int, int]]:
    return [(off, len(data)) for off, data in pairs]


def base_identity(path: str | os.PathLike[str], *, sha256: str, name: str = "") -> BaseIdentity:
    st = os.stat(path)
    return BaseIdentity(sha256=sha256, size=st.st_size, name=name, path=str(Path(path).resolve()), mtime_ns=st.st_mtime_ns)
