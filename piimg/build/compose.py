"""Base + overlay: find the base an overlay names, check it is unchanged, compose.

An overlay (:mod:`piimg.image.overlay`) records its base's SHA-256, size,
path and modification time at build time. Before composing:

1. the recorded path, if its size and mtime are unchanged, is trusted without
   re-reading it (the same rule the image cache uses for local files);
2. otherwise the file at the recorded path, or a cache entry whose raw image
   has that SHA-256, is hashed in full and used only if the digest matches.

So a base that was replaced or edited since the build is never composed
with an overlay made for another one.

A node layer of format 2 also names its build's shared layer
(``build/shared-<sha>.layer``) by the whole file's SHA-256: it is looked for
where it was written, then beside the node layer (a build folder moved as a
whole), and used only if its SHA-256 matches. Layers are checked before the
base (cheap first), and all before anything is written or asked.
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


def locate_shared(top: overlay.LayerFile) -> overlay.LayerFile | None:
    """The checked shared layer node layer ``top`` names (None for a layer straight on its base)."""
    ref = top.header.lower
    if ref is None:
        return None
    candidates = [Path(ref.path)] if ref.path else []
    beside = Path(top.path).parent / ref.name
    if ref.name and beside not in candidates:
        candidates.append(beside)
    for path in candidates:
        if path.is_file():
            return overlay.verify(path, expect_sha256=ref.sha256)  # overlay.check_stack compares the two
    raise ImageError(
        f"{top.path}: its shared layer {candidates[0] if candidates else ref.name} is missing",
        hint="run piimg build again",
    )


def _open_layers(
    path: str | os.PathLike[str], cache: Cache | None, reporter: Reporter
) -> tuple[overlay.LayerFile, overlay.LayerFile | None, Path]:
    """Node layer ``path``, its shared layer and its base, each checked."""
    top = overlay.verify(path)
    shared = locate_shared(top)
    overlay.check_stack(top, shared)  # also refuses a shared layer given as a node's image
    base = locate_base(top.header, overlay_name=os.fspath(path), cache=cache, reporter=reporter)
    return top, shared, base


def open_composed(path: str | os.PathLike[str], *, cache: Cache | None = None, reporter: Reporter = QUIET) -> overlay.ComposedImage:
    """Open node layer ``path`` composed with its (checked) shared layer and base."""
    top, shared, base = _open_layers(path, cache, reporter)
    return overlay.ComposedImage(top, base, shared)


def export_image(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, cache: Cache | None = None,
                 reporter: Reporter = QUIET) -> str:
    """Write base + (shared layer +) node layer ``path`` as a full image ``dest`` (sparse or reflinked
    copy of the base, the layers' blocks written into it); returns how the base was copied."""
    top, shared, base = _open_layers(path, cache, reporter)
    dest = Path(dest)
    if dest.exists():
        inputs = {Path(p).resolve(): what for p, what in ((path, "overlay"), (base, "base image"))}
        if shared is not None:
            inputs[Path(shared.path).resolve()] = "shared layer"
        if dest.resolve() in inputs:
            raise ImageError(f"{dest}: is the {inputs[dest.resolve()]} itself")
    if not dest.parent.is_dir():
        raise ImageError(f"{dest}: folder {dest.parent} does not exist")
    # the image carries the node's k3s token: mkstemp's 0600 stays on the final file
    with atomic_path(dest, suffix=".part") as tmp:
        method = sparse_copy(base, tmp)
        fd = os.open(tmp, os.O_WRONLY)
        try:
            for layer in (shared, top):
                if layer is not None:
                    overlay.apply_extents(fd, layer.header, layer.path, layer.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    return method
