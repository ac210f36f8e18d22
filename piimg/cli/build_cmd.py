"""piimg build, piimg export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from piimg.cli.common import App, echo, echo_json, next_step, pass_app
from piimg.errors import LastBuildError
from piimg.units import human_size

if TYPE_CHECKING:
    from piimg.build.images import BuiltNode


@click.command()
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Build only this node (repeatable).")
@click.option("--image", metavar="PATH|URL", help="Base image instead of image.os / image.url.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of --image as downloaded.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: build/).")
@click.option(
    "--full-images",
    is_flag=True,
    help="Write complete images (NODE.img) for other flashers, instead of overlays on the cached base.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON (see README, JSON output).")
@pass_app
def build(
    app: App, nodes: tuple[str, ...], image: str | None, sha256: str | None, output: Path | None, full_images: bool,
    as_json: bool,
) -> None:
    """Write one customised image per node: build/NODE.overlay (or NODE.img).

    By default each node gets an overlay: only the blocks of its boot
    partition that differ from the cached base image, plus the base's
    SHA-256; what every node gets alike (k3s, the first-boot program) is
    written once, into build/shared-<sha>.layer. `piimg flash` composes
    base + shared layer + overlay while writing the card;
    `piimg export NODE -o FILE.img` (or --full-images) gives a complete image
    for rpi-imager, Etcher or dd.
    """
    from piimg.build.images import build_images

    spec = app.spec()
    if nodes:
        for name in nodes:
            spec.node(name)  # unknown names fail before anything is done
    built = build_images(
        spec,
        app.secrets(),
        nodes=nodes,
        image=image,
        sha256=sha256,
        output_dir=output,
        full_images=full_images,
        reporter=app.reporter,
    )
    if as_json:
        echo_json(build_json(built, app.paths.last_build))
    else:
        for b in built:
            if b.is_overlay:
                below = "base + shared layer" if b.shared else "base"
                what = f"overlay: {human_size(b.changed_bytes)} differ from {below} ({human_size(b.size)} image)"
            else:
                what = f"full image {human_size(b.size)} ({b.copy_method})"
            echo(f"{b.hostname}: {b.image}")
            echo(f"  {what}, init format {b.init_format.value}, {b.role} at {b.address}, {b.seconds:.1f} s")
            echo(f"  boot partition: {', '.join(w for w in b.written if '/' not in w)}, "
                 f"piimg/ ({sum(1 for w in b.written if '/' in w)} files)")
            echo(f"  cmdline.txt: + {' '.join(b.cmdline_added)}")
        for shared in sorted({b.shared for b in built if b.shared}):
            echo(f"shared by these nodes: {shared} ({human_size(shared.stat().st_size)}: k3s and the first-boot program)")
        echo(f"recorded in {app.paths.last_build}")
        if any(b.is_overlay for b in built):
            app.reporter.info(
                "overlays are flashed by piimg only; for other flashers: piimg export NODE -o NODE.img, "
                "or piimg build --full-images"
            )
    if len(built) == 1:
        next_step(f"{app.cmd('flash')} DEVICE   (the card's whole disk, e.g. /dev/sdb; Linux: lsblk, macOS: diskutil list)")
    else:
        next_step(f"{app.cmd('flash')} --node {built[0].hostname} DEVICE, then the other nodes the same way")


def build_json(built: list[BuiltNode], last_build: Path) -> dict[str, object]:
    """``piimg build --json``: schema documented in the README (JSON output)."""
    return {
        "schema": 1,
        "last_build": str(last_build),
        "nodes": [
            {
                "hostname": b.hostname,
                "role": b.role,
                "address": b.address,
                "kind": b.kind,
                "file": str(b.image.resolve()),
                "image_size": b.size,
                "changed_bytes": b.changed_bytes,
                "disk_bytes": b.disk_bytes,
                "shared_layer": str(b.shared) if b.shared else None,
                "init_format": b.init_format.value,
                "boot_files_written": list(b.written),
                "cmdline_added": list(b.cmdline_added),
                "seconds": round(b.seconds, 3),
            }
            for b in built
        ],
    }


@click.command()
@click.argument("node", metavar="NODE|OVERLAY")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE.img",
              help="The full image to write.")
@pass_app
def export(app: App, node: str, output: Path) -> None:
    """Write a node's complete image (base + overlay) for other flashers.

    NODE is a node of the last build (build/last.json), or the path of an
    overlay file. The result is a sparse (or reflinked) copy of the base
    image with the node's blocks written into it, mode 0600 (it holds the
    cluster's k3s token).
    """
    from piimg.build import lastbuild
    from piimg.build.compose import export_image

    if Path(node).is_file():
        source = node
    else:
        record = lastbuild.load(app.paths.last_build)
        entry = record.nodes.get(node)
        if entry is None:
            raise LastBuildError(f"{node}: not in the last build (built: {', '.join(sorted(record.nodes)) or 'none'})",
                                 hint="give a node name from the last build, or an overlay file")
        if not entry.is_overlay:
            raise LastBuildError(f"{node}: was built as a full image already: {entry.image}")
        source = entry.image
    method = export_image(source, output, reporter=app.reporter)
    echo(f"wrote {output} ({method})")
    next_step(f"flash it with any tool, e.g. {app.cmd(f'flash {output} DEVICE')}")


COMMANDS = [build, export]
