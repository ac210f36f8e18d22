"""piimg router-setup."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from piimg.cli.common import App, confirm, declined, echo, echo_json, next_step, paint, pass_app
from piimg.errors import RouterError
from piimg.router.apply import conflicts_refused
from piimg.router.model import SECRET_FIELDS
from piimg.router.plan import MASK, Plan

if TYPE_CHECKING:
    from piimg.router.setup import Session


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
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan (and what was applied) as JSON; needs --dry-run or --yes (see README, JSON output).")
@pass_app
def router_setup(app: App, dry_run: bool, export: Path | None, yes: bool, no_backup: bool, as_json: bool) -> None:
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

    if as_json and not (dry_run or yes) and export is None:
        raise click.UsageError("--json needs --dry-run (the plan only) or --yes (apply without a prompt)")
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
        if as_json:
            return _json_run(app, session, dry_run=dry_run, backup=not no_backup)
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        for line in plan.lines():
            echo(plan_line(line, width))
        if plan.conflicts:
            raise conflicts_refused(plan, shown="after 'to fix:'")
        if plan.empty:
            next_step(app.cmd("status --watch") + "   (once the nodes are flashed and booted)")
            return
        if dry_run:
            echo("dry run: nothing was changed")
            next_step(app.cmd("router-setup") + "   (applies this plan, after a backup on the router)")
            return
        host = f"{spec.router.host}:{spec.router.api_port}"
        if not yes and not confirm(f"Apply these {len(plan.operations)} change(s) to the router at {host}?",
                                   nothing_done="nothing was changed on the router"):
            declined("not applied; nothing was changed on the router")
            return
        result = session.apply(backup=not no_backup, reporter=app.reporter)
        saved = f" (backup {result.backup}.backup saved on the router first)" if result.backup else ""
        echo(f"applied {len(result.done)} change(s){saved}")
        next_step(app.cmd("status --watch") + "   (once the nodes are flashed and booted)")


_PLAN_COLOR: dict[str, dict[str, Any]] = {"+": {"fg": "green"}, "~": {"fg": "yellow"}, "-": {"fg": "red"},
                                          "!": {"fg": "red", "bold": True}}
#: a word of a plan line: key=value with its quoted value kept whole (comment="piimg: homelab")
_WORD = re.compile(r'(?:[^\s"]+|"[^"]*")+')


def plan_line(line: str, width: int | None) -> str:
    """One plan line for the terminal: coloured by its action mark (+ ~ - !), and
    wrapped at ``width`` between words, never inside a key=value pair, the
    continuation indented under the text (None: one line, as scripts want it)."""
    indent = len(line) - len(line.lstrip(" "))
    out = line
    if width is not None and len(line) > width:
        words = _WORD.findall(line)
        lead = " " * (indent + 4)
        rows = [" " * indent + words[0]]
        for word in words[1:]:
            if len(rows[-1]) + 1 + len(word) <= width or rows[-1].strip() == "":
                rows[-1] += " " + word
            else:
                rows.append(lead + word)
        out = "\n".join(rows)
    style = _PLAN_COLOR.get(line.lstrip(" ")[:1])
    return "\n".join(paint(row, **style) for row in out.split("\n")) if style else out


def plan_json(plan: Plan, *, host: str, port: int) -> dict[str, Any]:
    """``router-setup --json``: the plan, secrets masked (schema in the README, JSON output)."""

    def masked(props: dict[str, str]) -> dict[str, str]:
        return {k: MASK if k in SECRET_FIELDS else v for k, v in props.items()}

    return {
        "schema": 1,
        "cluster": plan.cluster,
        "router": {"host": host, "port": port, "routeros": plan.dialect.text, "dialect": plan.dialect.name},
        "operations": [
            {"action": op.action, "menu": op.menu.path, "what": op.menu.what, "key": op.key,
             "props": masked(op.props), "old": masked(op.old), "text": op.describe()}
            for op in plan.operations
        ],
        "conflicts": [
            {"menu": c.menu.path, "key": c.key, "message": c.message, "fix": c.fix} for c in plan.conflicts
        ],
        "notes": list(plan.notes),
        "warnings": list(plan.warnings),
        "counts": {a: sum(op.action == a for op in plan.operations) for a in ("add", "set", "remove")},
        "applied": None,
        "backup": None,
    }


def _json_run(app: App, session: Session, *, dry_run: bool, backup: bool) -> None:
    plan = session.plan
    data = plan_json(plan, host=str(session.spec.router.host), port=session.spec.router.api_port)
    if plan.conflicts:
        echo_json(data)
        raise conflicts_refused(plan, shown="in conflicts[].fix")
    if not dry_run and not plan.empty:
        result = session.apply(backup=backup, reporter=app.reporter)
        data["applied"] = len(result.done)
        data["backup"] = f"{result.backup}.backup" if result.backup else None
    elif not dry_run:
        data["applied"] = 0
    echo_json(data)


COMMANDS = [router_setup]
