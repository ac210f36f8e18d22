"""piimg os list, piimg fetch."""

from __future__ import annotations

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.group("os")
def os_group() -> None:
    """Browse the Raspberry Pi Imager catalog."""


@os_group.command("list")
@click.option("--catalog", metavar="URL|FILE", help="Catalog to read (default: image.catalog).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@not_implemented("issue 3: image acquisition")
def os_list(app: App, catalog: str | None, as_json: bool) -> None:
    """List the images of a Raspberry Pi Imager catalog (os_list JSON)."""


@click.command()
@click.option("--offline", is_flag=True, help="Use only the cache; say what is missing.")
@click.option("--verify", is_flag=True, help="Re-hash a cached image fully.")
@pass_app
@not_implemented("issue 3: image acquisition")
def fetch(app: App, offline: bool, verify: bool) -> None:
    """Download, verify and cache the base image; print its path."""


COMMANDS = [os_group, fetch]
