"""piimg router-setup."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.command("router-setup")
@click.option("--dry-run", is_flag=True, help="Show the plan, change nothing.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.rsc", help="Write the equivalent RouterOS script.")
@click.option("--yes", is_flag=True, help="Apply without asking.")
@pass_app
@not_implemented("issue 6: router-setup")
def router_setup(app: App, dry_run: bool, export: Path | None, yes: bool) -> None:
    """Plan, show and apply the MikroTik configuration over the RouterOS API."""


COMMANDS = [router_setup]
