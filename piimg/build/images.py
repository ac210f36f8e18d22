"""``piimg build``: one customised image per node, by editing only the boot partition.

The FAT boot partition is edited with :class:`piimg.image.fat.FatFS` through
a :class:`~piimg.image.overlay.CowImage` over the base image (decompressed
once, cached): every write stays in memory, per 4 KiB block, and the base is
only read. No mount, no loop device, no root, the same on macOS. What comes
out per node is the list of blocks that differ from the base, written as

* an overlay (default): ``build/NODE.overlay``, those blocks plus a header
  naming the base by SHA-256 (:mod:`piimg.image.overlay`); ``piimg flash``
  composes base + overlay on the fly, ``piimg export`` writes a full image.
  A node costs a few hundred KiB and milliseconds, whatever the root file
  system holds;
* or a full image (``--full-images``): ``build/NODE.img``, a sparse (or
  reflinked) copy of the base with those blocks written into it.

The root partition's bytes are never written. Each file appears under its
final name only when complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from piimg.build import initformat, lastbuild
from piimg.build.payload import BootEdits, boot_edits
from piimg.errors import ImageError, LastBuildError
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
    changed_bytes: int = 0  # bytes of the image that differ from the base (4 KiB blocks)
    disk_bytes: int = 0  # what the output file takes on disk

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


def apply_edits(fs: FatFS, edits: BootEdits) -> list[str]:
    """Write ``edits`` into an open boot file system; returns the paths written."""
    for path in edits.remove:
        if fs.exists(path):
            if fs.is_dir(path):
                fs.rmtree(path)
            else:
                fs.remove(path)
    written = []
    for path, data in sorted(edits.files.items()):
        parent = path.rpartition("/")[0]
        if parent:
            fs.makedirs(parent)
        fs.write_file(path, data if isinstance(data, bytes) else data.read_bytes())
        written.append(path)
    if not fs.exists(CMDLINE):
        raise ImageError("the boot partition has no cmdline.txt")
    fs.write_file(CMDLINE, edits.apply_cmdline(fs.read_file(CMDLINE)))
    written.append(CMDLINE)
    return written


def node_file(out: Path, hostname: str, *, full: bool) -> Path:
    return out / f"{hostname}{'.img' if full else OVERLAY_SUFFIX}"


def _build_node(
    node: NodeSpec, edits: BootEdits, base: BaseImage, layout: PiLayout, fmt: InitFormat, dest: Path, *, full: bool
) -> BuiltNode:
    start = time.monotonic()
    with overlay.CowImage(base.path) as cow:
        # what the boot partition holds came from the base image: a problem found
        # in it is named after that image
        with FatFS.open(cow, layout.boot.start, layout.boot.size,  # type: ignore[arg-type]
                        name=f"{base.path} (boot partition)") as fs:
            written = apply_edits(fs, edits)
        changes = cow.changed_extents()
    # The output holds the k3s token: mkstemp's 0600 stays on the final file.
    with atomic_path(dest, suffix=".part") as tmp:
        if full:
            method = sparse_copy(base.path, tmp)
            fd = os.open(tmp, os.O_WRONLY)
            try:
                for offset, data in changes:
                    os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            method = "overlay"
            identity = overlay.base_identity(base.path, sha256=base.sha256, name=base.name)
            with open(tmp, "wb") as fh:
                overlay.write_overlay(fh, {"image_size": base.size, "base": identity, "node": node.hostname}, changes)
                fh.flush()
                os.fsync(fh.fileno())
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
        disk_bytes=dest.stat().st_blocks * 512,
    )


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


def _record(path: Path, spec: Spec, base: BaseImage, fmt: InitFormat, built: list[BuiltNode]) -> None:
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
            kind=b.kind, base_sha256=base.sha256, built_at=now,
        )
    record = lastbuild.LastBuild(
        built_at=now,
        spec=_spec_path(spec),
        base=lastbuild.BaseRef(path=str(base.path), sha256=base.sha256, name=base.name, init_format=fmt.value),
        nodes=dict(sorted(nodes.items())),
    )
    lastbuild.save(path, record)


def build_images(
    spec: Spec,
    secrets: Secrets,
    *,
    nodes: list[str] | tuple[str, ...] | None = None,
    image: str | None = None,
    sha256: str | None = None,
    output_dir: Path | None = None,
    last_build: Path | None = None,
    full_images: bool = False,
    reporter: Reporter = QUIET,
) -> list[BuiltNode]:
    """Build ``build/NODE.overlay`` (``build/NODE.img`` with ``full_images``) for every node (or the
    named ones); record them in ``build/last.json``."""
    selected = _select(spec, nodes)
    out = (output_dir if output_dir is not None else spec.base_dir / "build").resolve()
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
    built = []
    for node in selected:
        reporter.info(f"building {node.hostname} ...")
        dest = node_file(out, node.hostname, full=full_images)
        built.append(_build_node(node, edits[node.hostname], base, layout, fmt, dest, full=full_images))
    _record(last_build or spec.base_dir / "build" / "last.json", spec, base, fmt, built)
    return built
