"""piimg build."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.command()
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Build only this node (repeatable).")
@click.option("--image", metavar="PATH|URL", help="Base image instead of image.os / image.url.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of --image as downloaded.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: build/).")
@pass_app
@not_implemented("issue 4: piimg build")
def build(app: App, nodes: tuple[str, ...], image: str | None, sha256: str | None, output: Path | None) -> None:
    """Write one customised image per node into build/NODE.img."""


COMMANDS = [build]
