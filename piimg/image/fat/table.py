"""The file allocation table, held in memory and written back sector by sector."""

from __future__ import annotations

import itertools
import sys
from array import array
from typing import Final

from piimg.errors import ImageError

FREE: Final = 0


class FatTable:
    """One FAT (all copies are identical after :meth:`dirty_sectors` are written).

    FAT32 entries are 28 bits wide; the top 4 bits are reserved and must be kept
    as found (fatgen103, "FAT32 FAT Entry Values"), so they are split off on
    load and put back on serialisation.
    """

    def __init__(self, raw: bytes, *, bits: int, max_cluster: int, bytes_per_sector: int, where: str) -> None:
        self.bits = bits
        self.max_cluster = max_cluster
        self._where = where
        self._bps = bytes_per_sector
        self._esize = bits // 8
        self._mask = 0x0FFFFFFF if bits == 32 else 0xFFFF
        self.eoc_min = 0x0FFFFFF8 if bits == 32 else 0xFFF8
        self.eoc = 0x0FFFFFFF if bits == 32 else 0xFFFF
        self.bad = 0x0FFFFFF7 if bits == 32 else 0xFFF7
        self._arr = array("I" if bits == 32 else "H")
        if self._arr.itemsize != self._esize:  # pragma: no cover - exotic platforms
            self._arr = array("L" if bits == 32 else "H")
        self._arr.frombytes(raw)
        if sys.byteorder != "little":  # pragma: no cover
            self._arr.byteswap()
        self._high: dict[int, int] = {}
        if bits == 32 and max(self._arr) > self._mask:
            for i, v in enumerate(self._arr):
                if v > self._mask:
                    self._high[i] = v & ~self._mask
                    self._arr[i] = v & self._mask
        self._dirty: set[int] = set()
        self.free_count = self._count_free()
        self.last_alloc = 0

    def _count_free(self) -> int:
        arr = self._arr
        return arr[2 : self.max_cluster + 1].count(FREE)

    def corrupt(self, why: str) -> ImageError:
        return ImageError(f"{self._where}: corrupt FAT file system ({why})", hint="check it with fsck.vfat -n")

    def get(self, cluster: int) -> int:
        return self._arr[cluster]

    def set(self, cluster: int, value: int) -> None:
        self._arr[cluster] = value
        self._dirty.add(cluster * self._esize // self._bps)

    def chain(self, start: int) -> list[int]:
        """The clusters of the chain that begins at ``start``, in order."""
        out: list[int] = []
        cur = start
        limit = self.max_cluster
        while True:
            if not 2 <= cur <= limit:
                raise self.corrupt(f"cluster {cur} in the chain from {start} is out of range")
            out.append(cur)
            nxt = self._arr[cur]
            if nxt >= self.eoc_min:
                return out
            if nxt == FREE or nxt == self.bad:
                raise self.corrupt(f"chain from cluster {start} runs into a {'free' if nxt == FREE else 'bad'} cluster")
            if len(out) > limit:
                raise self.corrupt(f"the chain from cluster {start} loops")
            cur = nxt

    def free_chain(self, start: int) -> int:
        """Mark every cluster of a chain free; returns how many were freed."""
        clusters = self.chain(start)
        for c in clusters:
            self.set(c, FREE)
        self.free_count += len(clusters)
        return len(clusters)

    def _find(self, count: int, start: int) -> list[int]:
        """``count`` free clusters, the first contiguous run found from ``start``
        (wrapping round), else the free clusters in order from ``start``."""
        arr, top = self._arr, self.max_cluster + 1
        for lo, hi in ((start, top), (2, start)):
            i = lo
            while i < hi:
                try:
                    i = arr.index(FREE, i, hi)
                except ValueError:
                    break
                j = i + 1
                end = min(i + count, hi)
                while j < end and arr[j] == FREE:
                    j += 1
                if j - i == count:
                    return list(range(i, j))
                i = j + 1
        picked: list[int] = []
        for lo, hi in ((start, top), (2, start)):
            i = lo
            while len(picked) < count and i < hi:
                try:
                    i = arr.index(FREE, i, hi)
                except ValueError:
                    break
                picked.append(i)
                i += 1
        if len(picked) < count:  # pragma: no cover - guarded by free_count
            raise self.corrupt("free cluster count does not match the FAT")
        return picked

    def allocate(self, count: int, *, near: int = 0, after: int = 0) -> list[int]:
        """Allocate ``count`` clusters as one chain (linked to ``after`` if given).

        Searching starts at ``near`` (or after the last allocation) so that files
        come out contiguous; callers check :attr:`free_count` first."""
        if count == 0:
            return []
        if count > self.free_count:
            raise ImageError(f"{self._where}: file system full ({count} clusters needed, {self.free_count} free)")
        start = near if 2 <= near <= self.max_cluster else self.last_alloc + 1
        if not 2 <= start <= self.max_cluster:
            start = 2
        clusters = self._find(count, start)
        for a, b in itertools.pairwise(clusters):
            self.set(a, b)
        self.set(clusters[-1], self.eoc)
        if after:
            self.set(after, clusters[0])
        self.free_count -= count
        self.last_alloc = clusters[-1]
        return clusters

    def allocated_runs(self) -> list[tuple[int, int]]:
        """(first cluster, count) of every run of allocated, non-bad clusters."""
        arr, runs = self._arr, []
        i, top = 2, self.max_cluster + 1
        while i < top:
            try:
                i = next_used(arr, i, top, self.bad)
            except ValueError:
                break
            j = i
            while j < top and arr[j] != FREE and arr[j] != self.bad:
                j += 1
            runs.append((i, j - i))
            i = j
        return runs

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def dirty_sectors(self) -> list[tuple[int, bytes]]:
        """(sector index within the FAT, sector bytes) for every changed sector; clears the dirty set."""
        per = self._bps // self._esize
        out = []
        for s in sorted(self._dirty):
            part = self._arr[s * per : (s + 1) * per]
            if self._high:
                for i in range(len(part)):
                    part[i] |= self._high.get(s * per + i, 0)
            if sys.byteorder != "little":  # pragma: no cover
                part.byteswap()
            out.append((s, part.tobytes()))
        self._dirty.clear()
        return out


def next_used(arr: array[int], start: int, stop: int, bad: int) -> int:
    """Index of the first allocated, non-bad entry in ``arr[start:stop]``."""
    i = start
    while i < stop:
        v = arr[i]
        if v != FREE and v != bad:
            return i
        i += 1
    raise ValueError("no allocated cluster")
