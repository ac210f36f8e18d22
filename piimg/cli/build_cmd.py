"""piimg build."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, echo, next_step, pass_app
from piimg.units import human_size


@click.command()
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Build only this node (repeatable).")
@click.option("--image", metavar="PATH|URL", help="Base image instead of image.os / image.url.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of --image as downloaded.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: build/).")
@pass_app
def build(app: App, nodes: tuple[str, ...], image: str | None, sha256: str | None, output: Path | None) -> None:
    """Write one customised image per node into build/NODE.img."""
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
        last_build=app.paths.last_build,
        reporter=app.reporter,
    )
    for b in built:
        echo(f"{b.hostname}: {b.image}")
        echo(f"  size {human_size(b.size)}, init format {b.init_format.value}, {b.role} at {b.address}, "
             f"{b.seconds:.1f} s ({b.copy_method})")
        echo(f"  boot partition: {', '.join(w for w in b.written if '/' not in w)}, "
             f"piimg/ ({sum(1 for w in b.written if '/' in w)} files)")
        echo(f"  cmdline.txt: + {' '.join(b.cmdline_added)}")
    echo(f"recorded in {app.paths.last_build}")
    if len(built) == 1:
        next_step(f"{app.cmd('flash')} DEVICE   (the card's whole disk, e.g. /dev/sdb; Linux: lsblk, macOS: diskutil list)")
    else:
        next_step(f"{app.cmd('flash')} --node {built[0].hostname} DEVICE, then the other nodes the same way")


COMMANDS = [build]
