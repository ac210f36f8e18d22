"""piimg flash."""

from __future__ import annotations

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.command()
@click.argument("args", nargs=-1, metavar="[IMAGE] DEVICE")
@click.option("--node", metavar="NAME", help="Which built node image to flash.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-verify", is_flag=True, help="Skip the read-back verification.")
@click.option("--force", is_flag=True, help="Allow a regular file or a non-removable disk as target.")
@pass_app
@not_implemented("issue 5: piimg flash")
def flash(app: App, args: tuple[str, ...], node: str | None, yes: bool, no_verify: bool, force: bool) -> None:
    """Write IMAGE (default: the last build) to DEVICE, safely and verified."""


COMMANDS = [flash]
