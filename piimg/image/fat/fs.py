"""FatFS: edit a FAT16/FAT32 file system inside an image file, at a byte offset."""

from __future__ import annotations

import io
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Final

from piimg.errors import ImageError
from piimg.image.fat import dirent, names
from piimg.image.fat.bpb import FSINFO_LEAD_SIG, FSINFO_STRUC_SIG, FSINFO_TRAIL_SIG, Geometry, parse_boot_sector
from piimg.image.fat.table import FREE, FatTable

MAX_DIR_SLOTS: Final = 65536  # fatgen103: a directory may not exceed 65,536 32-byte entries
#: 16 Mi clusters: a 64 GiB FAT32 volume with 4 KiB clusters; 64 MiB of FAT in memory
MAX_CLUSTERS: Final = 16 * 2**20


class _NotFound(ImageError):
    """A path (or one of its parents) does not exist or is not a directory."""


@dataclass
class _Dir:
    """A directory's raw bytes and where they live (cluster 0: the FAT16 fixed root)."""

    path: str
    cluster: int
    clusters: list[int]
    data: bytearray


class FatFS:
    """A FAT file system inside ``image`` at ``offset``; see the package docstring.

    File data and directories are written as you go; the FAT copies and the
    FSInfo sector by :meth:`flush`, which :meth:`close` and leaving a ``with``
    block call (also after an exception: every operation checks paths and free
    space before it changes anything, so what is in memory matches the disk).
    Nothing outside ``offset .. offset + file system size`` is ever written.
    """

    def __init__(self, f: BinaryIO, *, offset: int, size: int, geometry: Geometry, where: str, owns: bool,
                 timestamp: float | None, readonly: bool = False) -> None:
        self._f = f
        self._base = offset
        self._size = size
        self.geometry = geometry
        self._where = where
        self._owns = owns
        self._timestamp = timestamp
        self._closed = False
        self._modified = False
        self._readonly = readonly
        self._chains_checked = False
        g = geometry
        fat_index = g.active_fat or 0
        if g.cluster_count > MAX_CLUSTERS:
            # the whole FAT is held in memory (4 bytes a cluster, one more for check_chains)
            raise ImageError(
                f"{where}: a FAT file system of {g.cluster_count} clusters ({g.size // 2**30} GiB): "
                f"more than the {MAX_CLUSTERS} piimg edits (a Raspberry Pi boot partition has well under 1 million)"
            )
        # only the entries of existing clusters: the BPB's FAT size may claim far more
        used = -(-(g.max_cluster + 1) * g.fat_bits // 8 // g.bytes_per_sector) * g.bytes_per_sector
        raw = self._read(g.fat_offset(fat_index), min(g.fat_size, used))
        self._fat = FatTable(raw, bits=g.fat_bits, max_cluster=g.max_cluster, bytes_per_sector=g.bytes_per_sector,
                             where=where)
        self._fsinfo_ok = False
        if g.fat_bits == 32 and g.fsinfo_sector:
            info = self._read(g.fsinfo_sector * g.bytes_per_sector, 512)
            (lead,) = struct.unpack_from("<I", info, 0)
            struc, _free, nxt = struct.unpack_from("<III", info, 484)
            (trail,) = struct.unpack_from("<I", info, 508)
            self._fsinfo_ok = (lead, struc, trail) == (FSINFO_LEAD_SIG, FSINFO_STRUC_SIG, FSINFO_TRAIL_SIG)
            if self._fsinfo_ok and 2 <= nxt <= g.max_cluster:
                self._fat.last_alloc = nxt

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, image: str | os.PathLike[str] | BinaryIO, offset: int = 0, size: int | None = None, *,
             readonly: bool = False, timestamp: float | None = None, name: str | None = None) -> FatFS:
        """Open the file system that starts ``offset`` bytes into ``image``.

        ``size`` is the partition size (the file system may not extend past it).
        ``name`` is what messages call the image (default: its path): a copy
        being edited under a temporary name is named after what the user gave.
        ``timestamp`` (seconds since the epoch) is used for every time written,
        instead of the current time, for reproducible images."""
        if offset < 0:
            raise ImageError(f"negative offset {offset}")
        owns = isinstance(image, (str, os.PathLike))
        if isinstance(image, (str, os.PathLike)):
            try:
                f: BinaryIO = open(image, "rb" if readonly else "r+b")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise ImageError(f"{name or os.fspath(image)}: cannot open: {exc.strerror or exc}") from exc
            name = name or os.fspath(image)
        else:
            f, name = image, name or str(getattr(image, "name", "<image>"))
        where = f"{name} at offset {offset}" if offset else name
        try:
            f.seek(0, io.SEEK_END)
            file_size = f.tell()
            f.seek(offset)
            boot = f.read(512)
            geometry = parse_boot_sector(boot, where=where)
            if size is not None and geometry.size > size:
                raise ImageError(f"{where}: the file system ({geometry.size} bytes) is larger than its partition ({size} bytes)")
            if offset + geometry.size > file_size:
                raise ImageError(f"{where}: image truncated: the file system needs {offset + geometry.size} bytes, "
                                 f"the file has {file_size}")
            return cls(f, offset=offset, size=geometry.size, geometry=geometry, where=where, owns=owns,
                       timestamp=timestamp, readonly=readonly)
        except BaseException:
            if owns:
                f.close()
            raise

    def __enter__(self) -> FatFS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Also on an exception: every operation checks before it changes
        # anything, so the FAT in memory matches what is already on disk.
        self.close()

    # --------------------------------------------------------------- raw I/O

    def _read(self, pos: int, length: int) -> bytes:
        if self._closed:
            raise ImageError(f"{self._where}: file system already closed")
        self._f.seek(self._base + pos)
        data = self._f.read(length)
        if len(data) != length:
            raise ImageError(f"{self._where}: image truncated (read {len(data)} of {length} bytes at {pos})")
        return data

    def _write(self, pos: int, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ImageError(f"{self._where}: file system already closed")
        if self._readonly:
            raise ImageError(f"{self._where}: opened read-only")
        if pos < 0 or pos + len(data) > self._size:  # never write outside the file system
            raise ImageError(f"{self._where}: internal error: write at {pos}+{len(data)} outside the file system")
        self._f.seek(self._base + pos)
        self._f.write(data)
        self._modified = True

    def _writable(self) -> None:
        """Before the first change: refuse read-only use, and a FAT whose chains are not
        each owned by exactly one file (see :meth:`check_chains`)."""
        if self._readonly:
            raise ImageError(f"{self._where}: opened read-only")
        if not self._chains_checked:
            self.check_chains()
            self._chains_checked = True

    def _all_chains(self) -> Iterator[tuple[str, int]]:
        """(path, first cluster) of the root directory (FAT32) and of every file and
        directory in the tree, parents first. Lazy: a directory is read only after
        its own chain was handed out (and checked by the caller)."""
        g = self.geometry
        if g.fat_bits == 32:
            yield "/", g.root_cluster
        stack: list[tuple[str, int]] = [("", 0)]
        while stack:
            path, cluster = stack.pop()
            d = self._root() if cluster == 0 else _Dir(path, cluster, [], self._read_clusters(self._fat.chain(cluster)))
            entries, _ = dirent.parse(d.data)
            for e in entries:
                if e.short in (dirent.DOT, dirent.DOTDOT) or e.cluster == 0:
                    continue
                sub = f"{path}/{e.name}" if path else e.name
                yield sub, e.cluster
                if e.is_dir:
                    stack.append((sub, e.cluster))

    def check_chains(self) -> None:
        """Refuse a FAT where two files share clusters (cross-linked chains), a chain
        loops, or one runs into a free, bad or out-of-range cluster.

        Any of these makes editing destructive: freeing the chain of a file being
        replaced would free clusters another file still uses, and the next
        allocation would write over that file (a firmware file, say). Every chain
        is checked, not only those about to be freed, because allocation may hand
        out any cluster the FAT calls free. One pass over the used clusters, one
        byte of memory per cluster.
        """
        fat, top = self._fat, self._fat.max_cluster
        seen = bytearray(top + 1)  # 0 free so far, 1 owned by an earlier chain, 2 by the current one
        for path, start in self._all_chains():
            chain: list[int] = []
            cur = start
            while True:
                if not 2 <= cur <= top:
                    raise self._chain_error(f"{path!r} points at cluster {cur}, outside the file system")
                if seen[cur] == 2:
                    raise self._chain_error(f"the cluster chain of {path!r} loops (at cluster {cur})")
                if seen[cur] == 1:
                    other = self._owner_of(cur, path)
                    raise self._chain_error(f"{path!r} and {other!r} are cross-linked (both use cluster {cur})")
                seen[cur] = 2
                chain.append(cur)
                nxt = fat.get(cur)
                if nxt >= fat.eoc_min:
                    break
                if nxt == FREE or nxt == fat.bad:
                    raise self._chain_error(
                        f"the cluster chain of {path!r} runs into a {'free' if nxt == FREE else 'bad'} cluster ({nxt})")
                cur = nxt
            for c in chain:
                seen[c] = 1

    def _owner_of(self, cluster: int, besides: str) -> str:
        """The path (other than ``besides``) whose chain holds ``cluster``: only for the error message."""
        top = self._fat.max_cluster
        for path, start in self._all_chains():
            if path == besides:
                continue
            cur, steps = start, 0
            while 2 <= cur <= top and steps <= top:
                if cur == cluster:
                    return path
                nxt = self._fat.get(cur)
                if nxt >= self._fat.eoc_min or nxt in (FREE, self._fat.bad):
                    break
                cur, steps = nxt, steps + 1
        return "another chain"

    def _chain_error(self, why: str) -> ImageError:
        return ImageError(
            f"{self._where}: damaged FAT file system: {why}; nothing was changed",
            hint="repair the boot partition with fsck.vfat (dosfstools), or start again from a fresh image",
        )

    def _now(self) -> float:
        return time.time() if self._timestamp is None else self._timestamp

    def _runs(self, clusters: list[int]) -> Iterator[tuple[int, int]]:
        """(first cluster, count) for each contiguous stretch of ``clusters``."""
        i = 0
        while i < len(clusters):
            j = i + 1
            while j < len(clusters) and clusters[j] == clusters[j - 1] + 1:
                j += 1
            yield clusters[i], j - i
            i = j

    def _read_clusters(self, clusters: list[int]) -> bytearray:
        out = bytearray()
        cs = self.geometry.cluster_size
        for first, n in self._runs(clusters):
            out += self._read(self.geometry.cluster_offset(first), n * cs)
        return out

    def _write_clusters(self, clusters: list[int], data: bytes | bytearray) -> None:
        """Write ``data`` over ``clusters``, zero-filling the tail of the last one."""
        cs = self.geometry.cluster_size
        view = memoryview(data)
        pos = 0
        for first, n in self._runs(clusters):
            chunk = view[pos : pos + n * cs]
            self._write(self.geometry.cluster_offset(first), chunk)
            if len(chunk) < n * cs:
                self._write(self.geometry.cluster_offset(first) + len(chunk), bytes(n * cs - len(chunk)))
            pos += n * cs

    # ------------------------------------------------------------ directories

    def _corrupt(self, why: str) -> ImageError:
        return self._fat.corrupt(why)

    def _root(self) -> _Dir:
        g = self.geometry
        if g.fat_bits == 16:
            return _Dir("", 0, [], bytearray(self._read(g.root_dir_offset, g.root_dir_size)))
        chain = self._fat.chain(g.root_cluster)
        return _Dir("", g.root_cluster, chain, self._read_clusters(chain))

    def _load_dir(self, path: str, cluster: int) -> _Dir:
        if cluster == 0:
            return self._root()
        chain = self._fat.chain(cluster)
        if len(chain) * self.geometry.cluster_size > MAX_DIR_SLOTS * dirent.ENTRY:
            raise self._corrupt(f"directory {path!r} is larger than 2 MiB")
        return _Dir(path, cluster, chain, self._read_clusters(chain))

    def _store_dir(self, d: _Dir, first_slot: int = 0, end_slot: int | None = None) -> None:
        """Write back the slots ``first_slot:end_slot`` of a directory."""
        lo = first_slot * dirent.ENTRY
        hi = len(d.data) if end_slot is None else end_slot * dirent.ENTRY
        if d.cluster == 0 and self.geometry.fat_bits == 16:
            self._write(self.geometry.root_dir_offset + lo, d.data[lo:hi])
            return
        cs = self.geometry.cluster_size
        for idx in range(lo // cs, (hi - 1) // cs + 1):
            a, b = max(lo, idx * cs), min(hi, (idx + 1) * cs)
            self._write(self.geometry.cluster_offset(d.clusters[idx]) + a - idx * cs, d.data[a:b])

    @staticmethod
    def _split(path: str) -> list[str]:
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ImageError(f"invalid path {path!r}: '..' is not allowed")
        return parts

    @staticmethod
    def _find(entries: list[dirent.Entry], name: str) -> dirent.Entry | None:
        key = names.fold(name)
        for e in entries:
            if e.short in (dirent.DOT, dirent.DOTDOT):
                continue
            if names.fold(e.name) == key or names.fold(e.short_name) == key:
                return e
        return None

    def _walk_to(self, parts: list[str], path: str) -> _Dir:
        """Load the directory at ``parts``; a missing or non-directory component raises."""
        d = self._root()
        for i, part in enumerate(parts):
            entries, _ = dirent.parse(d.data)
            e = self._find(entries, part)
            sub = "/".join(parts[: i + 1])
            if e is None:
                raise _NotFound(f"{self._where}: {sub!r} does not exist (looking for {path!r})")
            if not e.is_dir:
                raise _NotFound(f"{self._where}: {sub!r} is not a directory (looking for {path!r})")
            if e.cluster == 0:
                raise self._corrupt(f"directory {sub!r} has no cluster")
            d = self._load_dir(sub, e.cluster)
        return d

    def _lookup(self, path: str) -> tuple[_Dir, dirent.Entry | None, str]:
        """(parent directory, entry or None, last name) for a non-root path."""
        parts = self._split(path)
        if not parts:
            raise ImageError(f"{self._where}: {path!r} is the root directory")
        parent = self._walk_to(parts[:-1], path)
        entries, _ = dirent.parse(parent.data)
        return parent, self._find(entries, parts[-1]), parts[-1]

    def _need_slots(self, d: _Dir, count: int) -> tuple[int, int]:
        """(first slot of ``count`` free consecutive slots, clusters to add to the directory)."""
        data = d.data
        nslots = len(data) // dirent.ENTRY
        run = 0
        for i in range(nslots):
            b0 = data[i * dirent.ENTRY]
            if b0 == 0:
                return i - run, self._clusters_for_slots(d, i - run + count)
            if b0 == dirent.DELETED:
                run += 1
                if run == count:
                    return i - run + 1, 0
            else:
                run = 0
        return nslots - run, self._clusters_for_slots(d, nslots - run + count)

    def _clusters_for_slots(self, d: _Dir, slots: int) -> int:
        have = len(d.data) // dirent.ENTRY
        if slots <= have:
            return 0
        if d.cluster == 0 and self.geometry.fat_bits == 16:
            raise ImageError(f"{self._where}: the root directory is full ({have} entries)")
        if slots > MAX_DIR_SLOTS:
            raise ImageError(f"{self._where}: directory {d.path!r} is full ({MAX_DIR_SLOTS} entries)")
        per = self.geometry.cluster_size // dirent.ENTRY
        return -(-(slots - have) // per)

    def _check_space(self, clusters: int, what: str) -> None:
        if clusters > self._fat.free_count:
            cs = self.geometry.cluster_size
            raise ImageError(
                f"{self._where}: file system full: {what} needs {clusters * cs} bytes, {self._fat.free_count * cs} free")

    def _grow_dir(self, d: _Dir, count: int) -> None:
        new = self._fat.allocate(count, near=d.clusters[-1] + 1, after=d.clusters[-1])
        self._write_clusters(new, b"")
        d.clusters += new
        d.data += bytes(count * self.geometry.cluster_size)

    def _add_entry(self, d: _Dir, name: str, *, attr: int, cluster: int, size: int, slot: int, grow: int) -> None:
        """Write the entries for ``name`` at ``slot`` (found by :meth:`_need_slots`)."""
        entries, used = dirent.parse(d.data)
        plain = names.plain_short_name(name)
        if plain is not None:
            short, flags = plain
            records = []
        else:
            short = names.make_short_alias(name, {e.short for e in entries})
            flags = 0
            records = names.lfn_entries(name, short)
        records.append(dirent.make_entry(short, attr=attr, nt_flags=flags, cluster=cluster, size=size, ts=self._now()))
        if grow:
            self._grow_dir(d, grow)
        end = slot + len(records)
        d.data[slot * dirent.ENTRY : end * dirent.ENTRY] = b"".join(records)
        if used < end < len(d.data) // dirent.ENTRY and d.data[end * dirent.ENTRY] != 0:
            # we wrote over the end-of-directory mark: put it back after us
            d.data[end * dirent.ENTRY : (end + 1) * dirent.ENTRY] = bytes(dirent.ENTRY)
            end += 1
        self._store_dir(d, slot, end)

    def _slots_for(self, d: _Dir, name: str) -> tuple[int, int]:
        plain = names.plain_short_name(name)
        count = 1 if plain is not None else 1 + -(-len(name.encode("utf-16-le", "surrogatepass")) // 2 // 13)
        return self._need_slots(d, count)

    def _delete_entry(self, d: _Dir, e: dirent.Entry) -> None:
        for s in range(e.first_slot, e.slot + 1):
            d.data[s * dirent.ENTRY] = dirent.DELETED
        self._store_dir(d, e.first_slot, e.slot + 1)

    # ---------------------------------------------------------------- queries

    def _kind(self, path: str) -> str | None:
        """"dir", "file", or None when ``path`` does not exist (the root is a dir)."""
        try:
            if not self._split(path):
                return "dir"
            _, e, _ = self._lookup(path)
        except _NotFound:
            return None
        if e is None:
            return None
        return "dir" if e.is_dir else "file"

    def exists(self, path: str) -> bool:
        return self._kind(path) is not None

    def is_dir(self, path: str) -> bool:
        return self._kind(path) == "dir"

    def _entries(self, path: str) -> list[dirent.Entry]:
        d = self._walk_to(self._split(path), path)
        entries, _ = dirent.parse(d.data)
        return [e for e in entries if e.short not in (dirent.DOT, dirent.DOTDOT)]

    def listdir(self, path: str = "") -> list[str]:
        """Names (long names where present) in a directory, in on-disk order."""
        return [e.name for e in self._entries(path)]

    def read_file(self, path: str) -> bytes:
        _, e, _ = self._lookup(path)
        if e is None:
            raise ImageError(f"{self._where}: {path!r} does not exist")
        if e.is_dir:
            raise ImageError(f"{self._where}: {path!r} is a directory")
        if e.size == 0:
            return b""
        if e.cluster == 0:
            raise self._corrupt(f"{path!r} has {e.size} bytes but no cluster")
        chain = self._fat.chain(e.cluster)
        if len(chain) * self.geometry.cluster_size < e.size:
            raise self._corrupt(f"{path!r} has {e.size} bytes but only {len(chain)} clusters")
        return bytes(self._read_clusters(chain)[: e.size])

    def walk(self) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like :func:`os.walk`, top-down from the root (whose path is ``""``)."""
        stack = [""]
        seen: set[int] = set()
        while stack:
            path = stack.pop()
            entries = self._entries(path)
            for e in entries:
                if e.is_dir:
                    if e.cluster in seen or e.cluster < 2:
                        raise self._corrupt(f"directory {path}/{e.name} has a bad or shared cluster {e.cluster}")
                    seen.add(e.cluster)
            dirs = [e.name for e in entries if e.is_dir]
            files = [e.name for e in entries if not e.is_dir]
            yield path, dirs, files
            stack.extend(f"{path}/{n}" if path else n for n in reversed(dirs))

    def free_clusters(self) -> int:
        return self._fat.free_count

    @property
    def cluster_size(self) -> int:
        return self.geometry.cluster_size

    def allocated_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) in bytes from the start of the file system of the
        reserved sectors, the FATs (and FAT16 root directory), and every run of
        allocated clusters; everything else is free space."""
        g = self.geometry
        ranges = [(0, g.data_offset)]
        for first, n in self._fat.allocated_runs():
            off, length = g.cluster_offset(first), n * g.cluster_size
            last_off, last_len = ranges[-1]
            if last_off + last_len == off:
                ranges[-1] = (last_off, last_len + length)
            else:
                ranges.append((off, length))
        return ranges

    # ---------------------------------------------------------------- changes

    def write_file(self, path: str, data: bytes) -> None:
        """Create or replace a file; its parent directory must exist."""
        self._writable()
        parent, e, name = self._lookup(path)
        cs = self.geometry.cluster_size
        need = -(-len(data) // cs)
        if e is not None:
            if e.is_dir:
                raise ImageError(f"{self._where}: {path!r} is a directory")
            old = len(self._fat.chain(e.cluster)) if e.cluster else 0
            self._check_space(need - old, f"writing {path!r}")
            near = e.cluster
            if e.cluster:
                self._fat.free_chain(e.cluster)
            clusters = self._fat.allocate(need, near=near)
            self._write_clusters(clusters, data)
            raw = bytearray(parent.data[e.slot * dirent.ENTRY : (e.slot + 1) * dirent.ENTRY])
            dirent.set_cluster_size_time(raw, cluster=clusters[0] if clusters else 0, size=len(data), ts=self._now())
            raw[11] |= dirent.ATTR_ARCHIVE
            parent.data[e.slot * dirent.ENTRY : (e.slot + 1) * dirent.ENTRY] = raw
            self._store_dir(parent, e.slot, e.slot + 1)
            return
        names.validate_long_name(name)
        slot, grow = self._slots_for(parent, name)
        self._check_space(need + grow, f"writing {path!r}")
        clusters = self._fat.allocate(need)
        self._write_clusters(clusters, data)
        self._add_entry(parent, name, attr=dirent.ATTR_ARCHIVE, cluster=clusters[0] if clusters else 0,
                        size=len(data), slot=slot, grow=grow)

    def mkdir(self, path: str) -> None:
        self._writable()
        parent, e, name = self._lookup(path)
        if e is not None:
            raise ImageError(f"{self._where}: {path!r} already exists")
        names.validate_long_name(name)
        slot, grow = self._slots_for(parent, name)
        self._check_space(1 + grow, f"creating {path!r}")
        (cluster,) = self._fat.allocate(1)
        ts = self._now()
        # "." points at the directory itself, ".." at the parent, 0 meaning the root (fatgen103).
        parent_cluster = 0 if parent.path == "" else parent.cluster
        head = dirent.make_entry(dirent.DOT, attr=dirent.ATTR_DIRECTORY, nt_flags=0, cluster=cluster, size=0, ts=ts)
        head += dirent.make_entry(dirent.DOTDOT, attr=dirent.ATTR_DIRECTORY, nt_flags=0, cluster=parent_cluster,
                                  size=0, ts=ts)
        self._write_clusters([cluster], head)
        self._add_entry(parent, name, attr=dirent.ATTR_DIRECTORY, cluster=cluster, size=0, slot=slot, grow=grow)

    def makedirs(self, path: str) -> None:
        """Create a directory and any missing parents; existing directories are fine."""
        self._writable()
        parts = self._split(path)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            _, e, _ = self._lookup(sub)
            if e is None:
                self.mkdir(sub)
            elif not e.is_dir:
                raise ImageError(f"{self._where}: {sub!r} exists and is not a directory")

    def remove(self, path: str) -> None:
        """Delete a file."""
        self._writable()
        parent, e, _ = self._lookup(path)
        if e is None:
            raise ImageError(f"{self._where}: {path!r} does not exist")
        if e.is_dir:
            raise ImageError(f"{self._where}: {path!r} is a directory (use rmtree)")
        if e.cluster:
            self._fat.free_chain(e.cluster)
        self._delete_entry(parent, e)

    def rmtree(self, path: str) -> None:
        """Delete a directory and everything in it."""
        self._writable()
        parent, e, _ = self._lookup(path)
        if e is None:
            raise ImageError(f"{self._where}: {path!r} does not exist")
        if not e.is_dir:
            raise ImageError(f"{self._where}: {path!r} is not a directory")
        self._free_tree(e.cluster, path)
        self._delete_entry(parent, e)

    def _free_tree(self, cluster: int, path: str, depth: int = 0) -> None:
        if depth > 256:
            raise self._corrupt(f"directories nested too deep at {path!r}")
        d = self._load_dir(path, cluster)
        entries, _ = dirent.parse(d.data)
        for e in entries:
            if e.short in (dirent.DOT, dirent.DOTDOT):
                continue
            if e.is_dir:
                if e.cluster in (0, cluster):
                    raise self._corrupt(f"directory {path}/{e.name!r} has a bad cluster {e.cluster}")
                self._free_tree(e.cluster, f"{path}/{e.name}", depth + 1)
            elif e.cluster:
                self._fat.free_chain(e.cluster)
        self._fat.free_chain(cluster)

    # ------------------------------------------------------------ write-back

    def flush(self) -> None:
        """Write changed FAT sectors to every FAT copy and refresh FSInfo."""
        if self._closed:
            return
        g = self.geometry
        if self._fat.dirty:
            copies = range(g.num_fats) if g.active_fat is None else [g.active_fat]
            for sector, data in self._fat.dirty_sectors():
                for i in copies:
                    self._write(g.fat_offset(i) + sector * g.bytes_per_sector, data)
        if self._modified and self._fsinfo_ok:
            # FSI_Free_Count must be exact (fsck.vfat: "Free cluster summary wrong");
            # FSI_Nxt_Free holds the last allocated cluster, as Linux, Windows and
            # mkfs.vfat write it (fatgen103 calls it a hint where to start looking).
            info = struct.pack("<II", self._fat.free_count, self._fat.last_alloc or 0xFFFFFFFF)
            self._write(g.fsinfo_sector * g.bytes_per_sector + 488, info)
        self._f.flush()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._owns:
                self._f.close()
