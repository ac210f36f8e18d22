"""piimg manifests."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.command()
@click.option("--node", metavar="NAME", help="Render for this node (default: the initial server).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Write one file per addon into DIR.")
@pass_app
@not_implemented("issue 7: manifests")
def manifests(app: App, node: str | None, output: Path | None) -> None:
    """Render the Kubernetes manifests that first boot will deploy."""


COMMANDS = [manifests]
