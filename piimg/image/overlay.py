"""Per-node overlays: only the blocks in which a node's image differs from its base.

A node image is the cached base image with part of its boot partition
changed. Writing a full copy per node costs the base's size in disk space and
copy time on file systems without reflinks (ext4). An overlay file holds just
the changed 4 KiB blocks and names what it applies to by SHA-256; flashing
composes the layers on the fly (:class:`ComposedImage`), and
:func:`apply_extents` turns them into a full image for other tools.

Two layers per build (format 2). Most of what ``piimg build`` puts on a
card is the same on every node: the k3s binary (~65 MB), its install script,
the airgap images, the first-boot program. Writing that into every node's
overlay made a 5-node build cost 4.7x one node. So a build writes

* one **shared layer**, ``build/shared-<sha>.layer``: the blocks the
  node-independent files change in the base (written first, into the same
  clusters for every node), naming the base by SHA-256; and
* per node a small **node layer**, ``build/NODE.overlay``: the blocks that
  differ from base + shared layer (the node's own files, the FAT sectors and
  directory clusters that now list them), naming the base *and* the shared
  layer (its whole file's SHA-256, size, name and path).

Why a layer over the base rather than references into the artifact cache:
the FAT places a file's clusters wherever the allocator finds room, and a
shared file's bytes end up in 4 KiB blocks that also hold the FAT's own
structures only by accident of alignment. Writing the common files into a
copy-on-write image first and keeping *its changed blocks* needs no
knowledge of FAT at all, and composing base + shared + node is by
construction the image a full build writes (which does the same two steps
into one file). Build, flash, export and the refusals treat every layer alike.

File layout (the same for both kinds)::

    PIIMG OVERLAY 1\\n          16 bytes of magic
    {"format": 2, ...}\\n        one line of JSON: the header (below)
    NUL padding                 up to the next multiple of 4096: the data offset
    extent data                 each extent's bytes, in header order, back to back

Header keys: ``image_size`` (bytes of the composed image), ``base``
(``sha256``, ``size``, ``name``, ``path``, ``mtime_ns``: the base's identity
and where it was at build time), ``extents`` (``[[offset, length], ...]``,
sorted, non-overlapping, 4 KiB aligned, inside the image; only an extent
that ends with the image may have a partial last block), ``data_sha256``
(SHA-256 of all extent data, checked on open), ``node`` (informational),
``layer`` (``node`` or ``shared``) and ``lower`` (a node layer's shared layer,
or null). Format 1 (a node layer straight on the base, no ``layer``/``lower``)
is still read.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from piimg.errors import ImageError

MAGIC: Final = b"PIIMG OVERLAY 1\n"
FORMAT: Final = 2
#: Formats this reader understands (1: a node layer straight on the base).
READABLE: Final = (1, 2)
BLOCK: Final = 4096
#: A header line longer than this is not ours (a million extents would be ~20 MB).
MAX_HEADER: Final = 64 * 1024 * 1024
NODE: Final = "node"
SHARED: Final = "shared"
_READ: Final = 8 << 20


@dataclass(frozen=True)
class BaseIdentity:
    """The base image an overlay applies to."""

    sha256: str
    size: int
    name: str = ""
    path: str = ""  # where it was at build time (absolute)
    mtime_ns: int = 0  # with size: the cheap "unchanged since the build" check


@dataclass(frozen=True)
class LayerRef:
    """The shared layer a node layer applies on top of: the whole file's SHA-256 and where it was."""

    sha256: str
    size: int
    name: str
    path: str = ""  # absolute, at build time


@dataclass(frozen=True)
class OverlayHeader:
    image_size: int
    base: BaseIdentity
    extents: tuple[tuple[int, int], ...]
    data_sha256: str
    node: str = ""
    format: int = FORMAT
    layer: str = NODE
    lower: LayerRef | None = None

    @property
    def data_bytes(self) -> int:
        return sum(length for _, length in self.extents)

    def to_line(self) -> bytes:
        data = asdict(self)
        data["extents"] = [list(e) for e in self.extents]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class LayerFile:
    """An overlay file whose data was checked: where its extent data starts and the file's SHA-256."""

    path: str
    header: OverlayHeader
    offset: int
    sha256: str


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
        if data.get("format") not in READABLE:
            raise _bad(name, f"format {data.get('format')!r} (this piimg reads formats {', '.join(map(str, READABLE))})")
        lower = data.get("lower")
        header = OverlayHeader(
            image_size=int(data["image_size"]),
            base=BaseIdentity(**data["base"]),
            extents=tuple((int(a), int(n)) for a, n in data["extents"]),
            data_sha256=str(data["data_sha256"]),
            node=str(data.get("node", "")),
            format=int(data["format"]),
            layer=str(data.get("layer", NODE)),
            lower=LayerRef(**lower) if lower is not None else None,
        )
    except ImageError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(name, f"damaged header ({exc})") from None
    if header.layer not in (NODE, SHARED) or (header.layer == SHARED and header.lower is not None):
        raise _bad(name, f"damaged header (layer {header.layer!r})")
    pos = 0
    for start, length in header.extents:
        end = start + length
        if start < pos or length <= 0 or start % BLOCK or end > header.image_size or (end % BLOCK and end != header.image_size):
            raise _bad(name, f"bad extent {start}+{length}")
        pos = end
    if header.base.size != header.image_size:
        raise _bad(name, f"image size {header.image_size} differs from the base's {header.base.size}")
    return header


def _open_header(name: str) -> tuple[io.BufferedReader, OverlayHeader, int, bytes]:
    """The open file (at the header's end), its header, data offset and the bytes read so far."""
    try:
        fh = open(name, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError:
        raise ImageError(f"{name}: no such overlay file", hint="run piimg build again") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        head = fh.read(len(MAGIC))
        if head != MAGIC:
            raise _bad(name, "no overlay magic")
        line = fh.readline(MAX_HEADER)
        if not line.endswith(b"\n"):
            raise _bad(name, "header not terminated")
        header = _parse_header(name, line)
        offset = data_offset(len(line))
        if os.fstat(fh.fileno()).st_size < offset + header.data_bytes:
            raise _bad(name, "truncated (extent data missing)")
    except BaseException:
        fh.close()
        raise
    return fh, header, offset, head + line


def read_header(path: str | os.PathLike[str]) -> tuple[OverlayHeader, int]:
    """The header and the data offset, without reading the data (:func:`verify` checks it)."""
    fh, header, offset, _ = _open_header(os.fspath(path))
    fh.close()
    return header, offset


def verify(path: str | os.PathLike[str], *, expect_sha256: str | None = None) -> LayerFile:
    """Read the whole file: the extent data must match ``data_sha256``; returns it with the file's SHA-256.

    With ``expect_sha256`` (a layer named by its whole-file digest, which covers the data) one
    digest is computed, not two, while the file is the expected one; the caller compares ``sha256``."""
    name = os.fspath(path)
    fh, header, offset, seen = _open_header(name)
    whole = hashlib.sha256(seen)
    data = hashlib.sha256() if expect_sha256 is None else None
    try:
        with fh:
            pos = len(seen)
            while True:
                chunk = fh.read(_READ)
                if not chunk:
                    break
                whole.update(chunk)
                a, b = max(offset, pos), min(offset + header.data_bytes, pos + len(chunk))
                if data is not None and a < b:
                    data.update(memoryview(chunk)[a - pos : b - pos])
                pos += len(chunk)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if data is None and whole.hexdigest() != expect_sha256:
        return verify(name)  # not the expected file: read it again to tell a damaged one from another layer
    if data is not None and data.hexdigest() != header.data_sha256:
        raise _bad(name, "the extent data does not match its checksum (damaged file)")
    return LayerFile(name, header, offset, whole.hexdigest())


def _encode(write: Callable[[bytes], object], header_fields: dict[str, Any], extents: Sequence[tuple[int, bytes]]) -> OverlayHeader:
    digest = hashlib.sha256()
    for _, data in extents:
        digest.update(data)
    header = OverlayHeader(
        extents=tuple((off, len(data)) for off, data in extents),
        data_sha256=digest.hexdigest(),
        **header_fields,
    )
    line = header.to_line()
    write(MAGIC + line)
    write(bytes(data_offset(len(line)) - len(MAGIC) - len(line)))
    for _, data in extents:
        write(data)
    return header


def write_overlay(fh: io.BufferedIOBase | Any, header_fields: dict[str, Any], extents: list[tuple[int, bytes]]) -> OverlayHeader:
    """Write an overlay to the open binary file ``fh``: ``extents`` are (offset, data) pairs."""
    return _encode(fh.write, header_fields, extents)


def file_sha256(header_fields: dict[str, Any], extents: Sequence[tuple[int, bytes]]) -> str:
    """The SHA-256 of the file :func:`write_overlay` would write (to name it before it exists)."""
    digest = hashlib.sha256()
    _encode(digest.update, header_fields, extents)
    return digest.hexdigest()


class Reader(Protocol):
    """Random access to an image: what :class:`CowImage` edits on top of."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def pread_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` from ``offset``; returns the count (short only at the image's end)."""


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``fd`` at ``offset``; returns the count, short only at the file's end."""
    got = 0
    while got < len(view):
        done = os.preadv(fd, [view[got:]], offset + got)
        if done == 0:
            break
        got += done
    return got


@dataclass(frozen=True)
class _Segment:
    """Image bytes ``start .. end`` come from ``fd`` at ``pos``."""

    start: int
    end: int
    fd: int
    pos: int
    name: str


def _stack(lower: list[_Segment], upper: list[_Segment]) -> list[_Segment]:
    """``upper`` over ``lower`` (both sorted, non-overlapping): what shows through, sorted."""
    out = list(upper)
    starts = [s.start for s in upper]
    for seg in lower:
        pos = seg.start
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        while pos < seg.end:
            while i < len(upper) and upper[i].end <= pos:
                i += 1
            cut = min(upper[i].start, seg.end) if i < len(upper) else seg.end
            if pos < cut:
                out.append(_Segment(pos, cut, seg.fd, seg.pos + (pos - seg.start), seg.name))
            pos = upper[i].end if i < len(upper) and upper[i].start <= pos else cut
    return sorted(out, key=lambda s: s.start)


class _Stack:
    """A base file with layers over it, read with one ``preadv`` per run of bytes from one file.

    The layers' extents are merged once into a sorted list of segments (upper
    layers hide lower ones); a read takes each byte from exactly one file, so
    composing costs what reading a plain image costs.
    """

    def __init__(self, base_path: str, layers: Sequence[LayerFile] = (), *, size: int | None = None) -> None:
        self.base_path = base_path
        self._fds: list[int] = []
        try:
            self._base_fd = self._open(base_path)
            segments: list[_Segment] = []
            for layer in layers:
                fd = self._open(layer.path)
                new, pos = [], layer.offset
                for start, length in layer.header.extents:
                    new.append(_Segment(start, start + length, fd, pos, layer.path))
                    pos += length
                segments = _stack(segments, new)
        except BaseException:
            self.close()
            raise
        self.size = os.fstat(self._base_fd).st_size if size is None else size
        self._segments = segments
        self._starts = [s.start for s in segments]
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._base_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def _open(self, path: str) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ImageError(f"{path}: cannot open: {exc.strerror or exc}") from None
        self._fds.append(fd)
        return fd

    def pread_into(self, view: memoryview, offset: int) -> int:
        n = max(0, min(len(view), self.size - offset))
        end, pos = offset + n, offset
        segs = self._segments
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0 or segs[i].end <= offset:
            i += 1
        while pos < end:
            if i < len(segs) and segs[i].start <= pos:
                seg = segs[i]
                b = min(seg.end, end)
                if pread_full(seg.fd, view[pos - offset : b - offset], seg.pos + (pos - seg.start)) != b - pos:
                    raise ImageError(f"{seg.name}: short read (was the file truncated?)")
                i += 1
            else:
                b = min(segs[i].start, end) if i < len(segs) else end
                sub = view[pos - offset : b - offset]
                got = pread_full(self._base_fd, sub, pos)
                if got < len(sub):
                    sub[got:] = bytes(len(sub) - got)  # past the base's data: zeros, as in a sparse file
            pos = b
        return n

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class _SeekableRaw(io.RawIOBase):
    """The position bookkeeping both file views share: readable, seekable, one rule for seek."""

    _pos: int

    @property
    def size(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")  # as io.BytesIO; the two views used to differ here
        self._pos = base + offset
        return self._pos


class CowImage(_SeekableRaw):
    """A file object over an image that keeps every write in memory, per 4 KiB block.

    :class:`~piimg.image.fat.FatFS` edits the boot partition through it as if
    it were a copy of the image; :meth:`changed_extents` then gives the
    blocks that differ from what is below. Below is a base image file (only
    read), or any :class:`Reader`, e.g. another CowImage: the node layers of
    a build are edited on top of the shared layer's CowImage.
    """

    def __init__(self, lower: str | os.PathLike[str] | Reader) -> None:
        super().__init__()
        if isinstance(lower, (str, os.PathLike)):
            self._lower: Reader | _Stack = _Stack(os.fspath(lower))
            self._owned: _Stack | None = self._lower
            self.name = os.fspath(lower)
        else:
            self._lower, self._owned = lower, None
            self.name = lower.name
        self._size = self._lower.size
        self._blocks: dict[int, bytearray] = {}
        self._pos = 0

    @property
    def size(self) -> int:
        return self._size

    def writable(self) -> bool:
        return True

    def _lower_block(self, index: int) -> bytearray:
        block = bytearray(BLOCK)
        self._lower.pread_into(memoryview(block), index * BLOCK)
        return block

    def pread_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` with the edited image's bytes at ``offset``; returns the count."""
        n = self._lower.pread_into(view, offset)
        if n and self._blocks:
            for index in range(offset // BLOCK, (offset + n - 1) // BLOCK + 1):
                block = self._blocks.get(index)
                if block is None:
                    continue
                a = max(index * BLOCK, offset)
                b = min((index + 1) * BLOCK, offset + n)
                view[a - offset : b - offset] = block[a - index * BLOCK : b - index * BLOCK]
        return n

    def readinto(self, b: Any) -> int:
        n = self.pread_into(memoryview(b).cast("B"), self._pos)
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
            a = pos - index * BLOCK
            n = min(BLOCK - a, end - pos)
            chunk = data[pos - self._pos : pos - self._pos + n]
            block = self._blocks.get(index)
            if block is None and n == BLOCK:
                self._blocks[index] = bytearray(chunk)  # a whole block: what was below does not matter
            else:
                if block is None:
                    block = self._blocks[index] = self._lower_block(index)
                block[a : a + n] = chunk
            pos += n
        self._pos = end
        return len(data)

    def changed_extents(self) -> list[tuple[int, bytes]]:
        """(offset, data) of the runs of blocks that now differ from what is below, merged and sorted."""
        out: list[tuple[int, bytearray]] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block == self._lower_block(index):
                continue
            offset = index * BLOCK
            if out and out[-1][0] + len(out[-1][1]) == offset:
                out[-1][1].extend(block)
            else:
                out.append((offset, bytearray(block)))
        # an image whose size is not a multiple of 4 KiB: its last extent ends with the image
        return [(off, bytes(data[: self._size - off])) for off, data in out]

    def close(self) -> None:
        if not self.closed and self._owned is not None:
            self._owned.close()
        super().close()


class ComposedImage:
    """Base + shared layer (if any) + node layer, read as one image, without writing any of them.

    :meth:`pread_into` is what the flash writer reads through;
    :meth:`fileobj` gives a seekable file object for the block map and for
    reading the partition table. The layers are checked (:func:`verify`)
    by whoever opens them; :func:`piimg.build.compose.open_composed` also
    finds and checks the base and the shared layer.
    """

    def __init__(self, top: LayerFile, base_path: str | os.PathLike[str], shared: LayerFile | None = None) -> None:
        self.overlay_path = top.path
        self.base_path = os.fspath(base_path)
        self.header = top.header
        self.shared_path = shared.path if shared is not None else None
        check_stack(top, shared)
        layers = [shared, top] if shared is not None else [top]
        self._stack = _Stack(self.base_path, layers, size=top.header.image_size)
        size = os.fstat(self._stack._base_fd).st_size
        if size != top.header.image_size:
            self._stack.close()
            raise ImageError(
                f"{self.base_path}: has {size} bytes, the overlay {self.overlay_path} expects a base of {top.header.image_size}",
                hint="run piimg build again",
            )

    @classmethod
    def open(cls, overlay_path: str | os.PathLike[str], base_path: str | os.PathLike[str],
             shared_path: str | os.PathLike[str] | None = None) -> ComposedImage:
        """Check and compose ``overlay_path`` (and the shared layer it names) over ``base_path``."""
        top = verify(overlay_path)
        lower = top.header.lower
        shared = None if shared_path is None else verify(shared_path, expect_sha256=lower.sha256 if lower else None)
        return cls(top, base_path, shared)

    @property
    def name(self) -> str:
        return self.overlay_path

    @property
    def size(self) -> int:
        return self.header.image_size

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every file read: flash refuses any of them as its target."""
        return (self.overlay_path, self.base_path, *((self.shared_path,) if self.shared_path else ()))

    def pread_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` with the composed image's bytes at ``offset``; returns the count (short at the end)."""
        return self._stack.pread_into(view, offset)

    def fileobj(self) -> io.BufferedReader:
        return io.BufferedReader(_ComposedRaw(self), buffer_size=1 << 20)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> ComposedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_stack(top: LayerFile, shared: LayerFile | None) -> None:
    """Refuse layers that do not belong together (a shared layer flashed alone, another build's layer)."""
    if top.header.layer == SHARED:
        raise ImageError(f"{top.path}: is the layer shared by the nodes of a build, not a node's image",
                         hint="flash or export a node: build/NODE.overlay")
    ref = top.header.lower
    if ref is None:
        if shared is not None:
            raise ImageError(f"{top.path}: applies straight to its base; it has no shared layer")
        return
    if shared is None:
        raise ImageError(f"{top.path}: needs its shared layer {ref.path or ref.name}", hint="run piimg build again")
    if shared.sha256 != ref.sha256:
        raise ImageError(f"{shared.path}: not the shared layer {top.path} was built on (SHA-256 differs)",
                         hint="run piimg build again")
    if shared.header.layer != SHARED or shared.header.base.sha256 != top.header.base.sha256:
        raise ImageError(f"{shared.path}: not a shared layer on the base of {top.path}", hint="run piimg build again")


class _ComposedRaw(_SeekableRaw):
    def __init__(self, image: ComposedImage) -> None:
        super().__init__()
        self._image = image
        self._pos = 0
        self.name = image.name

    @property
    def size(self) -> int:
        return self._image.size

    def readinto(self, b: Any) -> int:
        n = self._image.pread_into(memoryview(b).cast("B"), self._pos)
        self._pos += n
        return n


def apply_extents(fd: int, header: OverlayHeader, overlay_path: str | os.PathLike[str], offset: int) -> None:
    """Write the overlay's extents into ``fd`` (a copy of what is below it)."""
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
