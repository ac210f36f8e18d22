"""Base + overlay: find the base an overlay names, check it is unchanged, compose.

An overlay (:mod:`piimg.image.overlay`) records its base's SHA-256, size,
path and modification time at build time. Before composing:

1. the recorded path, if its size and mtime are unchanged, is trusted without
   re-reading it (the same rule the image cache uses for local files);
2. otherwise the file at the recorded path, or a cache entry whose raw image
   has that SHA-256, is hashed in full and used only if the digest matches.

So a base that was replaced or edited since the build is never composed
with an overlay made for another one.
"""

from __future__ import annotations

import os
from pathlib import Path

from piimg.errors import ImageError
from piimg.fetch.cache import Cache
from piimg.fsutil import atomic_path
from piimg.image import overlay
from piimg.image.sparse import sparse_copy
from piimg.progress import QUIET, Reporter


def _unchanged(path: Path, base: overlay.BaseIdentity) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_size == base.size and st.st_mtime_ns == base.mtime_ns


def locate_base(header: overlay.OverlayHeader, *, overlay_name: str, cache: Cache | None = None,
                reporter: Reporter = QUIET) -> Path:
    """The base image ``header`` names, checked; :class:`ImageError` when it is gone or changed."""
    base = header.base
    recorded = Path(base.path) if base.path else None
    if recorded is not None and _unchanged(recorded, base):
        return recorded
    candidates: list[Path] = []
    if recorded is not None and recorded.is_file() and recorded.stat().st_size == base.size:
        candidates.append(recorded)
    cache = cache or Cache()
    for entry in cache.entries():
        if entry.sha256 == base.sha256 and entry.size == base.size:
            path = cache.image_path(entry.download_sha256)
            if path not in candidates:
                candidates.append(path)
    from piimg.fetch.download import sha256_file  # imports requests: only when a hash is needed

    for path in candidates:
        digest = sha256_file(path, reporter, description=f"checking base image {path.name} (SHA-256)")
        if digest == base.sha256:
            return path
        reporter.warn(f"{path}: not the base image {overlay_name} was built on (SHA-256 differs)")
    where = f" at {base.path}" if base.path else ""
    raise ImageError(
        f"{overlay_name}: its base image {base.name or ''} (SHA-256 {base.sha256[:16]}…){where} is gone or changed",
        hint="run piimg build again (it fetches the base if needed)",
    )


def open_composed(path: str | os.PathLike[str], *, cache: Cache | None = None, reporter: Reporter = QUIET) -> overlay.ComposedImage:
    """Open overlay ``path`` composed with its (checked) base."""
    header, _ = overlay.read_header(path)
    base = locate_base(header, overlay_name=os.fspath(path), cache=cache, reporter=reporter)
    return overlay.ComposedImage.open(path, base)


def export_image(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, cache: Cache | None = None,
                 reporter: Reporter = QUIET) -> str:
    """Write base + overlay ``path`` as a full image ``dest`` (sparse or reflinked copy of the base,
    the overlay's blocks written into it); returns how the base was copied."""
    header, offset = overlay.read_header(path)
    base = locate_base(header, overlay_name=os.fspath(path), cache=cache, reporter=reporter)
    dest = Path(dest)
    if dest.exists() and dest.resolve() in (base.resolve(), Path(path).resolve()):
        raise ImageError(f"{dest}: is the {'base image' if dest.resolve() == base.resolve() else 'overlay'} itself")
    if not dest.parent.is_dir():
        raise ImageError(f"{dest}: folder {dest.parent} does not exist")
    # the image carries the node's k3s token: mkstemp's 0600 stays on the final file
    with atomic_path(dest, suffix=".part") as tmp:
        method = sparse_copy(base, tmp)
        fd = os.open(tmp, os.O_WRONLY)
        try:
            overlay.apply_extents(fd, header, path, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    return method
