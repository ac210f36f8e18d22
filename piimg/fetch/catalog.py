"""The Raspberry Pi Imager catalog (``os_list_imagingutility_v4.json``).

The document is ``{"imager": {...}, "os_list": [...]}``. An ``os_list`` item
is either an image (``url``, ``extract_size``, ``extract_sha256``,
``image_download_size``, ``image_download_sha256``, ``release_date``,
``init_format``, ``devices``, optional ``bmap_url``) or a category with
inline ``subitems`` or a ``subitems_url`` pointing at another document of the
same shape (or a bare list). Items without a real download (``Erase`` uses
``internal://format``; "Use custom" has no url) are skipped.

``image.os`` names an image by a short, stable slug derived from its download
directory: ``.../raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/x.img.xz``
is ``raspios-lite-arm64``. Several releases may share a slug; the newest wins.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urljoin, urlparse

from piimg.errors import ConfigError, DownloadError, NotFound
from piimg.units import is_sha256

MAX_DEPTH: Final = 5
_DATE_SUFFIX: Final = re.compile(r"[-_]\d{4}-\d{2}-\d{2}\Z")
_DATE_PREFIX: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[-_]")
_COMPRESSION: Final = re.compile(r"(\.(img|iso|raw))?(\.(xz|gz|zst|zip|bz2))?\Z", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogEntry:
    slug: str
    name: str
    url: str
    release_date: str = ""
    description: str = ""
    extract_size: int | None = None
    extract_sha256: str | None = None
    image_download_size: int | None = None
    image_download_sha256: str | None = None
    init_format: str | None = None
    devices: tuple[str, ...] = ()
    bmap_url: str | None = None
    category: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["devices"] = list(self.devices)
        d["category"] = list(self.category)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CatalogEntry:
        return cls(**{**d, "devices": tuple(d.get("devices") or ()), "category": tuple(d.get("category") or ())})


def slug_for_url(url: str) -> str:
    """A short stable name for the image behind ``url`` (see the module doc)."""
    parts = [unquote(p) for p in urlparse(url).path.split("/") if p]
    if "images" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("images")
        if i > 0:
            return _slugify(parts[i - 1])
    if len(parts) >= 2:
        parent = _DATE_SUFFIX.sub("", parts[-2])
        if parent and parent != parts[-2]:  # a dated release folder: its name without the date
            return _slugify(parent)
    stem = _COMPRESSION.sub("", parts[-1]) if parts else url
    return _slugify(_DATE_PREFIX.sub("", stem))


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _sha(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and is_sha256(value.lower()) else None


def parse(
    doc: Any, *, origin: str, fetch: Callable[[str], Any] | None = None, _depth: int = 0, _path: tuple[str, ...] = ()
) -> list[CatalogEntry]:
    """All images in ``doc`` (a loaded catalog), following ``subitems_url`` through ``fetch``."""
    if isinstance(doc, dict):
        items = doc.get("os_list")
        if items is None:
            raise DownloadError(f"{origin}: not a Raspberry Pi Imager catalog (no os_list)")
    else:
        items = doc
    if not isinstance(items, list):
        raise DownloadError(f"{origin}: not a Raspberry Pi Imager catalog (os_list is not a list)")
    out: list[CatalogEntry] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or "")
        if "subitems" in item and isinstance(item["subitems"], list):
            out += parse(item["subitems"], origin=origin, fetch=fetch, _depth=_depth, _path=(*_path, name))
            continue
        if "subitems_url" in item:
            if fetch is None or _depth >= MAX_DEPTH:
                continue
            sub_url = urljoin(origin, str(item["subitems_url"]))
            out += parse(fetch(sub_url), origin=sub_url, fetch=fetch, _depth=_depth + 1, _path=(*_path, name))
            continue
        url = item.get("url")
        if not isinstance(url, str) or "://" not in url or url.startswith("internal://"):
            continue
        url = urljoin(origin, url)
        devices = item.get("devices")
        out.append(
            CatalogEntry(
                slug=slug_for_url(url),
                name=name,
                url=url,
                release_date=str(item.get("release_date") or ""),
                description=str(item.get("description") or ""),
                extract_size=_int(item.get("extract_size")),
                extract_sha256=_sha(item.get("extract_sha256")),
                image_download_size=_int(item.get("image_download_size")),
                image_download_sha256=_sha(item.get("image_download_sha256")),
                init_format=str(item["init_format"]) if item.get("init_format") else None,
                devices=tuple(str(d) for d in devices) if isinstance(devices, list) else (),
                bmap_url=str(item["bmap_url"]) if item.get("bmap_url") else None,
                category=_path,
            )
        )
    return out


def unique(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """Entries without repeats (the same image is often listed under several categories)."""
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.url not in seen:
            seen.add(e.url)
            out.append(e)
    return out


def resolve(entries: list[CatalogEntry], slug: str, *, source: str) -> CatalogEntry:
    """The newest image named ``slug``; a ConfigError with suggestions otherwise."""
    matches = [e for e in entries if e.slug == slug]
    if not matches:
        slugs = sorted({e.slug for e in entries})
        close = difflib.get_close_matches(slug, slugs, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run `piimg os list` to see the names"
        raise ConfigError("image.os", f"{slug!r} is not in the catalog {source}", hint=hint)
    return max(matches, key=lambda e: (e.release_date, e.url))


# ------------------------------------------------------------------ loading


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def local_path(source: str, base_dir: Path | None = None) -> Path:
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    p = Path(source).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def load_document(source: str, *, fetch_text: Callable[[str], str], base_dir: Path | None = None) -> Any:
    """Parse a catalog document from a URL or a local file."""
    if is_url(source):
        try:
            text = fetch_text(source)
        except NotFound:
            raise DownloadError(f"{source}: catalog not found (HTTP 404)") from None
    else:
        path = local_path(source, base_dir)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DownloadError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DownloadError(f"{source}: catalog is not valid JSON: {exc}") from exc


def load(source: str, *, fetch_text: Callable[[str], str], base_dir: Path | None = None) -> list[CatalogEntry]:
    """All images of the catalog at ``source`` (URL or file), categories flattened."""
    origin = source if is_url(source) else local_path(source, base_dir).resolve().as_uri()

    def fetch(url: str) -> Any:
        return load_document(url, fetch_text=fetch_text, base_dir=base_dir)

    return unique(parse(fetch(source), origin=origin, fetch=fetch))
