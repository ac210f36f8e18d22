"""The image cache under the user's cache folder (``PIIMG_CACHE_DIR`` overrides it).

Layout::

    images/<download-sha256>/image.img     decompressed raw image (sparse)
    images/<download-sha256>/meta.json     digests, size, name, source
    downloads/<key>.part                   an interrupted download, resumable
    catalogs/<sha256 of source>.json       last catalog seen (for --offline)
    local-digests.json                     SHA-256 of local files by (realpath, size, mtime_ns)
    url-digests.json                       SHA-256 of each base image URL downloaded (for --offline)
    artifacts/<sha256>/<name>              verified k3s files and charts (piimg.fetch.artifacts)
    artifacts/by-url.json                  SHA-256 of each unpinned small file (sha256sum-*.txt) by URL

The three ``*.json`` indexes only save work (a hash, a lookup offline); a
damaged one counts as empty and is rewritten by the next entry.

Entries are keyed by the SHA-256 of the file as downloaded, which is what the
catalog and the user know before downloading. An entry appears only complete
and verified (written under a temporary name, then renamed). A cached image is
re-checked cheaply on every use (size and stored digests) and fully (re-hash)
on request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from piimg.fsutil import temp_dir, write_atomic
from piimg.paths import user_cache_dir

META_SCHEMA: Final = 1

#: The small JSON indexes (``{key: value}``) in the cache folder, each read and written by
#: :meth:`Cache.recall` and :meth:`Cache.remember` only.
LOCAL_DIGESTS: Final = "local-digests.json"
URL_DIGESTS: Final = "url-digests.json"
ARTIFACT_URLS: Final = "artifacts/by-url.json"


@dataclass(frozen=True)
class CacheEntry:
    download_sha256: str
    sha256: str  # of the raw image
    size: int
    name: str
    source: str
    init_format: str | None = None
    extract_sha256: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheEntry:
        return cls(
            download_sha256=str(data["download_sha256"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            name=str(data["name"]),
            source=str(data["source"]),
            init_format=data.get("init_format"),
            extract_sha256=data.get("extract_sha256"),
        )


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or user_cache_dir()

    # ------------------------------------------------------------------ images

    def entry_dir(self, download_sha256: str) -> Path:
        return self.root / "images" / download_sha256

    def image_path(self, download_sha256: str) -> Path:
        return self.entry_dir(download_sha256) / "image.img"

    def lookup(self, download_sha256: str) -> CacheEntry | None:
        """The entry if present and consistent (size and stored digest); None otherwise."""
        d = self.entry_dir(download_sha256)
        try:
            data = json.loads((d / "meta.json").read_text())
            entry = CacheEntry.from_json(data)
            size = (d / "image.img").stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if entry.download_sha256 != download_sha256 or size != entry.size:
            return None
        if entry.extract_sha256 and entry.extract_sha256 != entry.sha256:
            return None
        return entry

    @contextlib.contextmanager
    def new_entry(self, download_sha256: str) -> Iterator[Path]:
        """A temporary folder to fill; renamed into place by :meth:`commit`, removed on error."""
        # claimed (piimg.fsutil): a folder left by a killed piimg is removed by the next one
        with temp_dir(self.root / "images", f".{download_sha256[:16]}.") as tmp:
            yield tmp

    def commit(self, tmp: Path, entry: CacheEntry) -> Path:
        write_atomic(tmp / "meta.json", json.dumps({"schema": META_SCHEMA, **asdict(entry)}, indent=2) + "\n")
        final = self.entry_dir(entry.download_sha256)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final / "image.img"

    def remove(self, download_sha256: str) -> None:
        shutil.rmtree(self.entry_dir(download_sha256), ignore_errors=True)

    def entries(self) -> list[CacheEntry]:
        out = []
        images = self.root / "images"
        if images.is_dir():
            for d in sorted(images.iterdir()):
                if not d.name.startswith(".") and (e := self.lookup(d.name)):
                    out.append(e)
        return out

    # ------------------------------------------------------------------ downloads

    def download_dest(self, key: str, filename: str) -> Path:
        """Where a download lands (``.part`` beside it while incomplete)."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-80:]
        return self.root / "downloads" / f"{key[:32]}-{safe}"

    # ------------------------------------------------------------------ catalogs

    def catalog_path(self, source: str) -> Path:
        return self.root / "catalogs" / f"{hashlib.sha256(source.encode()).hexdigest()[:32]}.json"

    def save_catalog(self, source: str, entries: list[dict[str, Any]]) -> None:
        write_atomic(self.catalog_path(source), json.dumps({"source": source, "entries": entries}) + "\n")

    def load_catalog(self, source: str) -> list[dict[str, Any]] | None:
        try:
            data = json.loads(self.catalog_path(source).read_text())
            entries = data["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entries if isinstance(entries, list) else None

    # ------------------------------------------------------------------ small indexes

    def _index_path(self, index: str) -> Path:
        return self.root / index

    def _read_index(self, index: str) -> dict[str, str]:
        """The index's entries; a missing, unreadable or damaged index is empty (it only saves work:
        what it would have said is computed again, and the next :meth:`remember` rewrites it)."""
        try:
            data = json.loads(self._index_path(index).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def recall(self, index: str, key: str) -> str | None:
        """What :meth:`remember` stored under ``key`` in ``index`` (one of the ``*_INDEX`` names)."""
        return self._read_index(index).get(key)

    def remember(self, index: str, key: str, value: str, *, keep: Callable[[str], bool] | None = None) -> None:
        """Store ``key`` -> ``value`` in ``index``, written under a temporary name and renamed,
        so a reader never sees half an index; ``keep`` drops the other entries it says no to."""
        entries = self._read_index(index)
        entries[key] = value
        if keep is not None:
            entries = {k: v for k, v in entries.items() if k == key or keep(k)}
        write_atomic(self._index_path(index), json.dumps(entries, indent=1, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ local file digests

    @staticmethod
    def _local_key(path: Path) -> str:
        st = path.stat()
        return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"

    def local_digest(self, path: Path) -> str | None:
        """A remembered SHA-256 of a local file, valid while its path, size and mtime are unchanged."""
        try:
            key = self._local_key(path)
        except OSError:
            return None
        return self.recall(LOCAL_DIGESTS, key)

    def remember_local_digest(self, path: Path, digest: str) -> None:
        # entries of files that no longer exist are dropped, so the index stays small
        self.remember(LOCAL_DIGESTS, self._local_key(path), digest,
                      keep=lambda key: os.path.exists(key.rsplit("|", 2)[0]))
