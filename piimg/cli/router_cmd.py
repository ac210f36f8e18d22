"""piimg router-setup."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from piimg.cli.common import App, confirm, echo, next_step, pass_app
from piimg.errors import RouterError


def _prompt(text: str) -> str:
    return str(click.prompt(text, hide_input=True, default="", show_default=False))


def _interactive() -> bool:
    return sys.stdin.isatty()


@click.command("router-setup")
@click.option("--dry-run", is_flag=True, help="Show the plan, change nothing.")
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the equivalent RouterOS script and stop (offline when router.version is not auto); "
    "with router.kind: frr, the FRR bgpd configuration.",
)
@click.option("--yes", is_flag=True, help="Apply without asking.")
@click.option("--no-backup", is_flag=True, help="Do not save /system/backup on the router before changing it.")
@pass_app
def router_setup(app: App, dry_run: bool, export: Path | None, yes: bool, no_backup: bool) -> None:
    """Plan, show and apply the MikroTik configuration over the RouterOS API.

    Reads the router, prints what it would add, change and remove (only items
    marked "piimg: <cluster>"), asks, saves a backup on the router, applies.
    A second run prints "no changes". The password comes from the variable
    named by router.password_env, or a prompt on a terminal; never from argv.
    """
    from piimg.manifests.addons import bgp_password_warning
    from piimg.router.client import router_password
    from piimg.router.setup import export_frr, export_script, open_session
    from piimg.spec.model import RouterKind

    spec = app.spec()
    md5_caveat = bgp_password_warning(spec)
    if md5_caveat is not None:
        app.reporter.warn(md5_caveat)
    prompt = _prompt if _interactive() else None
    if spec.router.kind is RouterKind.FRR:
        if export is None:
            raise RouterError(
                "router.kind is frr: piimg cannot configure an FRR router itself",
                hint=app.cmd("router-setup --export frr.conf") + " writes the bgpd configuration to load with vtysh -f",
            )
        export_frr(spec, export)
        echo(f"wrote {export} (FRR bgpd configuration; it holds the BGP key: mode 0600)")
        next_step(f"copy {export.name} to the router and load it: vtysh -f {export.name}; set up the addressing and DHCP its comments list")
        return
    if export is not None:
        dialect = export_script(spec, export, password=lambda: router_password(spec.router, prompt=prompt))
        echo(f"wrote {export} for {dialect}")
        next_step(f"upload {export.name} to the router (Files) and run there: /import file-name={export.name}")
        return
    password = router_password(spec.router, prompt=prompt)
    with open_session(spec, password, reporter=app.reporter) as session:
        plan = session.plan
        for line in plan.lines():
            echo(line)
        if plan.conflicts:
            raise RouterError(
                f"{len(plan.conflicts)} item(s) on the router are in the way and not managed by piimg; nothing was changed",
                hint="fix them as shown after 'to fix:', then run piimg router-setup again",
            )
        if plan.empty:
            next_step(app.cmd("status --watch") + "   (once the nodes are flashed and booted)")
            return
        if dry_run:
            echo("dry run: nothing was changed")
            next_step(app.cmd("router-setup") + "   (applies this plan, after a backup on the router)")
            return
        if not yes and not confirm("apply these changes to the router?", nothing_done="nothing was changed"):
            echo("nothing was changed")
            return
        result = session.apply(backup=not no_backup, reporter=app.reporter)
        saved = f" (backup {result.backup}.backup saved on the router first)" if result.backup else ""
        echo(f"applied {len(result.done)} change(s){saved}")
        next_step(app.cmd("status --watch") + "   (once the nodes are flashed and booted)")


COMMANDS = [router_setup]
