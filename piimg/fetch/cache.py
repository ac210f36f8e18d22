"""The image cache under the user's cache folder (``PIIMG_CACHE_DIR`` overrides it).

Layout::

    images/<download-sha256>/image.img     decompressed raw image (sparse)
    images/<download-sha256>/meta.json     digests, size, name, source
    downloads/<key>.part                   an interrupted download, resumable
    catalogs/<sha256 of source>.json       last catalog seen (for --offline)
    local-digests.json                     SHA-256 of local files by (realpath, size, mtime_ns)

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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from piimg.fsutil import temp_dir, write_atomic
from piimg.paths import user_cache_dir

META_SCHEMA: Final = 1


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

    # ------------------------------------------------------------------ local file digests

    def _local_index(self) -> Path:
        return self.root / "local-digests.json"

    @staticmethod
    def _local_key(path: Path) -> str:
        st = path.stat()
        return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"

    def local_digest(self, path: Path) -> str | None:
        """A remembered SHA-256 of a local file, valid while its path, size and mtime are unchanged."""
        try:
            index = json.loads(self._local_index().read_text())
            value = index.get(self._local_key(path))
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def remember_local_digest(self, path: Path, digest: str) -> None:
        try:
            index = json.loads(self._local_index().read_text())
            if not isinstance(index, dict):
                index = {}
        except (OSError, ValueError):
            index = {}
        index[self._local_key(path)] = digest
        # drop entries of files that no longer exist, so the index stays small
        index = {k: v for k, v in index.items() if os.path.exists(k.rsplit("|", 2)[0])}
        write_atomic(self._local_index(), json.dumps(index, indent=1) + "\n")
