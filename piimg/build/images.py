"""``piimg build``: one customised image per node, by editing only the boot partition.

The FAT boot partition is edited with :class:`piimg.image.fat.FatFS` through
a :class:`~piimg.image.overlay.CowImage` over the base image (decompressed
once, cached): every write stays in memory, per 4 KiB block, and the base is
only read. No mount, no loop device, no root, the same on macOS.

Every build edits in two steps, whatever it writes out:

1. the files that are the same on every node (:func:`piimg.build.payload.common_files`:
   the k3s binary and install script, airgap images, the first-boot program),
   and the removals every node needs, on a CowImage over the base: the
   *shared* blocks;
2. per node, its own files and ``cmdline.txt`` on a CowImage over that one:
   the *node* blocks (its files, and the FAT sectors and directory clusters
   that list them; FAT allocation continues after the shared files, so the
   shared blocks are the same for every node).

What comes out:

* overlays (default): the shared blocks once, ``build/shared-<sha>.layer``
  (named by the first 16 hex digits of the file's SHA-256), and per node
  ``build/NODE.overlay``, its blocks plus a header naming the base and the
  shared layer by SHA-256 (:mod:`piimg.image.overlay`); ``piimg flash``
  composes base + shared + node on the fly, ``piimg export`` writes a full
  image. A node costs its own files (~100 KiB) and milliseconds: the 65 MB
  of k3s are written once per build, not once per node;
* or full images (``--full-images``): ``build/NODE.img``, a sparse (or
  reflinked) copy of the base with the shared and the node blocks written
  into it: the same bytes as base + shared + node composed.

A shared layer that no node of ``build/last.json`` and no ``*.overlay`` in
the output folder names any more is removed after the build. The root
partition's bytes are never written. Each file appears under its final name
only when complete. ``SOURCE_DATE_EPOCH`` (reproducible-builds.org) fixes the
FAT timestamps; by default a node's files get the time the build started and
the shared files the modification time of what they were read from, so that
a rebuild with the same inputs reuses the shared layer already written.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from piimg.build import initformat, lastbuild
from piimg.build.payload import BootEdits, boot_edits, common_files
from piimg.errors import ConfigError, ImageError, LastBuildError
from piimg.fetch import artifacts
from piimg.fetch.source import BaseImage, Fetcher, looks_like_a_pi_image, obtain_base_image
from piimg.fsutil import atomic_path
from piimg.image import overlay
from piimg.image.fat import FatFS
from piimg.image.partitions import PiLayout, open_layout
from piimg.image.sparse import sparse_copy
from piimg.progress import QUIET, Reporter
from piimg.spec.model import InitFormat, NodeSpec, Spec
from piimg.spec.secrets import Secrets

CMDLINE: Final = "cmdline.txt"
OVERLAY_SUFFIX: Final = ".overlay"
SHARED_PREFIX: Final = "shared-"
SHARED_SUFFIX: Final = ".layer"
CONFIG: Final = "config.txt"


@dataclass(frozen=True)
class BuiltNode:
    """One finished node image and what was written into it."""

    hostname: str
    role: str
    address: str
    image: Path  # build/NODE.overlay, or build/NODE.img with --full-images
    size: int  # of the (composed) image
    init_format: InitFormat
    written: tuple[str, ...]  # files created or replaced on the boot partition
    cmdline_added: tuple[str, ...]  # words cmdline.txt now carries
    copy_method: str  # "overlay", or how the base was copied for a full image
    seconds: float
    kind: str = "overlay"  # "overlay" | "image"
    changed_bytes: int = 0  # bytes of the output's own blocks: differing from base + shared layer (overlay), or base
    disk_bytes: int = 0  # what the output file takes on disk
    shared: Path | None = None  # the shared layer an overlay applies on (shared by every node of the build)

    @property
    def is_overlay(self) -> bool:
        return self.kind == "overlay"


def _inspect_base(base: BaseImage, layout: PiLayout, spec: Spec, reporter: Reporter = QUIET) -> InitFormat:
    with FatFS.open(base.path, layout.boot.start, layout.boot.size, readonly=True) as fs:
        names = fs.listdir("")
        text = fs.read_file(CMDLINE) if fs.exists(CMDLINE) else None
        config = fs.read_file(CONFIG) if fs.exists(CONFIG) else None
    if text is None:
        raise ImageError(f"{base.path}: the boot partition has no cmdline.txt: not a Raspberry Pi OS image")
    initformat.refuse_unsupported(text, config, image_name=str(base.path))
    chosen = spec.image.init_format
    if chosen not in (InitFormat.AUTO, InitFormat.SYSTEMD):
        # An explicit choice wins, but one that contradicts the image gives a card that never configures itself.
        try:
            seen = initformat.detect(names, text)
        except ImageError:
            seen = None
        if seen is InitFormat.SYSTEMD:
            reporter.warn(
                f"image.init_format is {chosen.value}, but {base.path} looks like a {seen.value} image; "
                "the nodes may not configure themselves (image.init_format: auto detects it)"
            )
    return initformat.resolve(
        spec.image.init_format, catalog_format=base.init_format, boot_files=names, cmdline_text=text, image_name=str(base.path)
    )


def base_arch(spec: Spec, base: BaseImage, reporter: Reporter = QUIET) -> str:
    """The base image's architecture (``image.arch``, else its catalog URL or file name)."""
    arch, how = artifacts.image_arch(spec.image.arch, base.location, base.name, str(base.path))
    if how.startswith("assumed"):
        reporter.warn(f"k3s for arm64 ({how})")
    if arch == "armhf":
        reporter.warn(
            "armhf (32-bit) image: k3s-armhf needs an ARMv7 board (Pi 2 or newer); "
            "first boot refuses a Pi 1, Zero or Zero W"
        )
    return arch


@dataclass(frozen=True)
class SharedEdits:
    """What every node of a build gets alike: written once, into the shared layer."""

    files: dict[str, bytes | Path] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


def shared_edits(edits: Iterable[BootEdits], candidates: Mapping[str, bytes | Path]) -> SharedEdits:
    """The ``candidates`` (node-independent files) that every node's edits write as they are,
    and the removals every node's edits ask for."""
    edits = list(edits)
    if not edits:
        return SharedEdits()
    files = {p: v for p, v in candidates.items() if all(e.files.get(p) == v for e in edits)}
    remove = tuple(p for p in edits[0].remove if all(p in e.remove for e in edits))
    return SharedEdits(files, remove)


def _remove(fs: FatFS, paths: Iterable[str]) -> None:
    for path in paths:
        if fs.exists(path):
            if fs.is_dir(path):
                fs.rmtree(path)
            else:
                fs.remove(path)


def _write_files(fs: FatFS, files: Mapping[str, bytes | Path]) -> list[str]:
    written = []
    for path, data in sorted(files.items()):
        parent = path.rpartition("/")[0]
        if parent:
            fs.makedirs(parent)
        fs.write_file(path, data if isinstance(data, bytes) else data.read_bytes())
        written.append(path)
    return written


def apply_shared(fs: FatFS, shared: SharedEdits) -> list[str]:
    """Step 1 of a build: the removals and files every node shares; returns the paths written."""
    _remove(fs, shared.remove)
    return _write_files(fs, shared.files)


def apply_edits(fs: FatFS, edits: BootEdits, shared: SharedEdits | None = None) -> list[str]:
    """Write ``edits`` into an open boot file system, leaving out what ``shared`` (step 1,
    already applied) did; returns the paths written."""
    shared = shared or SharedEdits()
    _remove(fs, (p for p in edits.remove if p not in shared.remove))
    written = _write_files(fs, {p: d for p, d in edits.files.items() if p not in shared.files})
    if not fs.exists(CMDLINE):
        raise ImageError("the boot partition has no cmdline.txt")
    fs.write_file(CMDLINE, edits.apply_cmdline(fs.read_file(CMDLINE)))
    written.append(CMDLINE)
    return written


def _source_date_epoch() -> float | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ConfigError("SOURCE_DATE_EPOCH", f"{value!r} is not a number of seconds since 1970")
    return float(value)


def build_timestamp() -> float:
    """The time the FAT entries of a node's own files get: ``SOURCE_DATE_EPOCH`` if set, else now."""
    epoch = _source_date_epoch()
    return time.time() if epoch is None else epoch


def shared_timestamp(shared: SharedEdits) -> float:
    """The time the shared files' FAT entries get: ``SOURCE_DATE_EPOCH`` if set, else the newest
    modification time of the cached files they are read from (k3s). Not the build's time: a
    rebuild from the same base, k3s and piimg then gives the same shared layer, byte for byte,
    and keeps the one already written (no 65 MB write; the nodes built earlier keep sharing it)."""
    epoch = _source_date_epoch()
    if epoch is not None:
        return epoch
    times = [data.stat().st_mtime for data in shared.files.values() if isinstance(data, Path)]
    return max(times) if times else time.time()


def node_file(out: Path, hostname: str, *, full: bool) -> Path:
    return out / f"{hostname}{'.img' if full else OVERLAY_SUFFIX}"


@dataclass(frozen=True)
class _Shared:
    """Step 1's result: its blocks, the files it wrote, and the layer file (overlays only)."""

    changes: list[tuple[int, bytes]]
    written: tuple[str, ...]
    ref: overlay.LayerRef | None = None


def _boot_fs(image: overlay.CowImage, base: BaseImage, layout: PiLayout, stamp: float) -> FatFS:
    # what the boot partition holds came from the base image: a problem found in it is named after that image
    return FatFS.open(image, layout.boot.start, layout.boot.size, timestamp=stamp,  # type: ignore[arg-type]
                      name=f"{base.path} (boot partition)")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_shared_layer(out: Path, base: BaseImage, changes: list[tuple[int, bytes]]) -> overlay.LayerRef:
    """``out/shared-<sha>.layer``; an identical file already there is kept."""
    fields = {
        "image_size": base.size,
        "base": overlay.base_identity(base.path, sha256=base.sha256, name=base.name),
        "layer": overlay.SHARED,
    }
    sha = overlay.file_sha256(fields, changes)
    dest = out / f"{SHARED_PREFIX}{sha[:16]}{SHARED_SUFFIX}"
    try:
        same = dest.is_file() and overlay.verify(dest, expect_sha256=sha).sha256 == sha
    except ImageError:
        same = False
    if not same:
        # holds no secret (only files every node gets), but the node layers are 0600: so is this
        with atomic_path(dest, suffix=".part") as tmp:
            with open(tmp, "wb") as fh:
                overlay.write_overlay(fh, fields, changes)
            _fsync(tmp)
    return overlay.LayerRef(sha256=sha, size=dest.stat().st_size, name=dest.name, path=str(dest))


def _build_node(
    node: NodeSpec, edits: BootEdits, base: BaseImage, layout: PiLayout, fmt: InitFormat, dest: Path, tmp: Path, *,
    shared_image: overlay.CowImage, shared_edits: SharedEdits, shared: _Shared, stamp: float, full: bool
) -> BuiltNode:
    """Edit ``node`` over the shared blocks and write its output to ``tmp`` (not yet synced):
    the caller syncs every node's file at once and renames each to its ``dest``."""
    start = time.monotonic()
    with overlay.CowImage(shared_image) as cow:
        with _boot_fs(cow, base, layout, stamp) as fs:
            written = [*shared.written, *apply_edits(fs, edits, shared_edits)]
        changes = cow.changed_extents()
    if full:
        method = sparse_copy(base.path, tmp)
        fd = os.open(tmp, os.O_WRONLY)
        try:
            for offset, data in (*shared.changes, *changes):
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        changes = [*shared.changes, *changes]
    else:
        method = "overlay"
        fields = {
            "image_size": base.size,
            "base": overlay.base_identity(base.path, sha256=base.sha256, name=base.name),
            "node": node.hostname,
            "lower": shared.ref,
        }
        with open(tmp, "wb") as fh:
            overlay.write_overlay(fh, fields, changes)
    return BuiltNode(
        hostname=node.hostname,
        role=node.role.value,
        address=str(node.address),
        image=dest,
        size=base.size,
        init_format=fmt,
        written=tuple(written),
        cmdline_added=edits.cmdline_add,
        copy_method=method,
        seconds=time.monotonic() - start,
        kind="image" if full else "overlay",
        changed_bytes=sum(len(data) for _, data in changes),
        disk_bytes=tmp.stat().st_blocks * 512,
        shared=Path(shared.ref.path) if shared.ref else None,
    )


def _drop_unused_shared(out: Path, record: lastbuild.LastBuild) -> list[Path]:
    """Remove the shared layers in ``out`` that neither ``record`` nor an overlay in ``out`` names."""
    used = {str(Path(e.shared).resolve()) for e in record.nodes.values() if e.shared}
    for path in out.glob(f"*{OVERLAY_SUFFIX}"):
        try:
            ref = overlay.read_header(path)[0].lower
        except ImageError:
            continue
        if ref is not None:
            used.update({str(Path(ref.path).resolve()), str(out / ref.name)})
    removed = []
    for path in sorted(out.glob(f"{SHARED_PREFIX}*{SHARED_SUFFIX}")):
        if str(path.resolve()) not in used and str(path) not in used:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _select(spec: Spec, names: list[str] | tuple[str, ...] | None) -> list[NodeSpec]:
    if not names:
        return list(spec.nodes)
    selected: list[NodeSpec] = []
    for name in names:
        node = spec.node(name)  # ConfigError naming the known nodes
        if node not in selected:
            selected.append(node)
    return selected


def _spec_path(spec: Spec) -> str:
    return str(Path(spec.source).resolve()) if not spec.source.startswith("<") else ""


def _record(path: Path, spec: Spec, base: BaseImage, fmt: InitFormat, built: list[BuiltNode]) -> lastbuild.LastBuild:
    nodes: dict[str, lastbuild.NodeImage] = {}
    try:
        previous = lastbuild.load(path)
    except LastBuildError:
        previous = None
    if previous is not None:
        # keep nodes built earlier (piimg build --node X, -o DIR, another base) while their files
        # exist: each entry names its own file and base
        for name, entry in previous.nodes.items():
            if Path(entry.image).is_file() and any(n.hostname == name for n in spec.nodes):
                nodes[name] = entry
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for b in built:
        nodes[b.hostname] = lastbuild.NodeImage(
            image=str(b.image.resolve()), size=b.size, role=b.role, address=b.address, init_format=b.init_format.value,
            kind=b.kind, base_sha256=base.sha256, built_at=now, shared=str(b.shared) if b.shared else "",
        )
    record = lastbuild.LastBuild(
        built_at=now,
        spec=_spec_path(spec),
        base=lastbuild.BaseRef(path=str(base.path), sha256=base.sha256, name=base.name, init_format=fmt.value),
        nodes=dict(sorted(nodes.items())),
    )
    lastbuild.save(path, record)
    return record


def build_images(
    spec: Spec,
    secrets: Secrets,
    *,
    nodes: list[str] | tuple[str, ...] | None = None,
    image: str | None = None,
    sha256: str | None = None,
    output_dir: Path | None = None,
    full_images: bool = False,
    reporter: Reporter = QUIET,
) -> list[BuiltNode]:
    """Build ``build/NODE.overlay`` (``build/NODE.img`` with ``full_images``) for every node (or the
    named ones) into ``output_dir`` (default: the project's build folder); record them in
    ``build/last.json`` (``spec.paths``)."""
    selected = _select(spec, nodes)
    out = (output_dir if output_dir is not None else spec.paths.build_dir).resolve()
    _source_date_epoch()  # a bad SOURCE_DATE_EPOCH: refused before any download (read again for the stamps)
    artifacts.check_pins(spec)  # a channel, an unpinned version: refused before any download
    base = obtain_base_image(spec, image=image, sha256=sha256, reporter=reporter, check_local=looks_like_a_pi_image)
    layout = open_layout(base.path)
    fmt = _inspect_base(base, layout, spec, reporter)
    arch = base_arch(spec, base, reporter)
    reporter.info(
        f"base {base.name}: boot partition {layout.boot.size // 2**20} MiB at {layout.boot.start // 2**20} MiB, "
        f"init format {fmt.value}, {arch}"
    )
    cluster = artifacts.obtain_cluster_artifacts(spec, arch, Fetcher(reporter=reporter))
    for node in selected:
        if node_file(out, node.hostname, full=full_images).resolve() == Path(base.path).resolve():
            raise ImageError(
                f"{base.path}: the base image would be overwritten by the image of node {node.hostname}",
                hint="copy the base image elsewhere or build into another folder with -o DIR",
            )
    # Everything that can fail on a value (templates, secrets from the
    # environment) fails here, before the first image is written.
    edits = {node.hostname: boot_edits(spec, node, secrets, fmt, artifacts=cluster) for node in selected}
    stamp = build_timestamp()
    shared_edits_ = shared_edits(edits.values(), common_files(cluster))
    built = []
    with overlay.CowImage(base.path) as shared_image:
        with _boot_fs(shared_image, base, layout, shared_timestamp(shared_edits_)) as fs:
            written = apply_shared(fs, shared_edits_)
        changes = shared_image.changed_extents()
        ref = None if full_images else _write_shared_layer(out, base, changes)
        shared = _Shared(changes, tuple(written), ref)
        # Each output under a temporary name (0600: it holds the k3s token) until all are
        # written and synced, then renamed: one journal commit for all nodes, not one each,
        # and a failure leaves no node half-built.
        with contextlib.ExitStack() as outputs:
            tmps = []
            for node in selected:
                reporter.info(f"building {node.hostname} ...")
                dest = node_file(out, node.hostname, full=full_images)
                tmps.append(outputs.enter_context(atomic_path(dest, suffix=".part")))
                built.append(_build_node(node, edits[node.hostname], base, layout, fmt, dest, tmps[-1],
                                         shared_image=shared_image, shared_edits=shared_edits_, shared=shared,
                                         stamp=stamp, full=full_images))
            for tmp in tmps:
                _fsync(tmp)
    record = _record(spec.paths.last_build, spec, base, fmt, built)
    for path in _drop_unused_shared(out, record):
        reporter.info(f"removed {path.name}: no node uses it any more")
    return built
