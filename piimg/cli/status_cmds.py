"""piimg status, piimg kubeconfig."""

from __future__ import annotations

import time
from pathlib import Path

import click

from piimg.build import lastbuild
from piimg.cli.common import App, echo, echo_json, pass_app
from piimg.errors import PiimgError
from piimg.status import kubeconfig as kcfg
from piimg.status.checks import Options, run_checks
from piimg.status.model import Check, State, all_ok
from piimg.status.routerchk import RouterOpener

_MARK = {State.OK: "ok", State.FAIL: "FAIL", State.PENDING: "pending", State.SKIPPED: "skipped"}


def _router_opener(app: App) -> RouterOpener:
    from piimg.status.router_access import opener

    return opener(app.spec())


def _built_formats(app: App) -> dict[str, str]:
    """Each node's init format from the last build, if there is one (it tells the cloud-init seed race apart)."""
    try:
        record = lastbuild.load(app.paths.last_build)
    except PiimgError:
        return {}
    return {name: entry.init_format for name, entry in record.nodes.items()}


def _print(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        echo(f"{_MARK[c.state]:<8} {c.name:<{width}}  {c.detail}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Re-run until every check passes or --timeout expires.")
@click.option("--timeout", default=1800, show_default=True, type=click.IntRange(min=0), metavar="SECONDS",
              help="How long --watch waits.")
@click.option("--interval", default=15, show_default=True, type=click.IntRange(min=1), metavar="SECONDS",
              help="Pause between --watch rounds.")
@click.option(
    "--kubeconfig", "kubeconfig_path", type=click.Path(dir_okay=False, path_type=Path),
    default=Path("kubeconfig"), show_default=True, help="Kubeconfig written by `piimg kubeconfig`.",
)
@click.option("--no-router", is_flag=True, help="Skip the router checks.")
@pass_app
def status(
    app: App, as_json: bool, watch: bool, timeout: int, interval: int, kubeconfig_path: Path, no_router: bool
) -> int:
    """End-to-end health: nodes, first boot, k3s, MetalLB, router BGP, routes, HTTP.

    Each check prints ok, FAIL, pending or skipped with one line of detail,
    in the order a person would debug. Exit status 0 only when all pass.
    Run `piimg status --watch` after flashing and walking away.
    """
    spec = app.spec()
    if not kubeconfig_path.is_absolute():
        kubeconfig_path = app.paths.root / kubeconfig_path if not kubeconfig_path.exists() else kubeconfig_path
    opts = Options(kubeconfig=kubeconfig_path, router=None if no_router else _router_opener(app),
                   init_formats=_built_formats(app))
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        rounds += 1
        checks = run_checks(spec, opts)
        if not watch or all_ok(checks):
            break
        passed = sum(c.state is State.OK for c in checks)
        waiting = next(c for c in checks if c.state is not State.OK)
        app.reporter.info(
            f"[round {rounds}] {passed}/{len(checks)} checks ok; waiting for {waiting.name}: {waiting.detail}"
        )
        if time.monotonic() + interval > deadline:
            app.reporter.warn(f"--watch gave up after {timeout} s")
            break
        time.sleep(interval)
    if as_json:
        echo_json({"ok": all_ok(checks), "checks": [c.to_dict() for c in checks]})
    else:
        _print(checks)
        failed = [c for c in checks if c.state is not State.OK]
        echo(f"\n{len(checks) - len(failed)}/{len(checks)} checks ok" + ("" if failed else ": the cluster answers end to end"))
    return 0 if all_ok(checks) else 1


@click.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to write it (default: ./kubeconfig beside piimg.yaml).",
)
@click.option("--merge", is_flag=True, help="Merge into ~/.kube/config ($KUBECONFIG) without touching other contexts.")
@pass_app
def kubeconfig(app: App, output: Path | None, merge: bool) -> None:
    """Fetch the cluster's kubeconfig from the server node over SSH.

    Reads /etc/rancher/k3s/k3s.yaml from the first server with the system ssh
    client (your keys, host key checking on), points it at
    https://SERVER:6443 and names cluster, context and user after
    cluster.name. Written with mode 0600.
    """
    spec = app.spec()
    doc = kcfg.fetch(spec, kcfg.server_target(spec))
    if merge:
        path = kcfg.write(doc, output or kcfg.default_merge_path(), merge_into_existing=True)
        echo(f"merged context {spec.cluster.name} into {path}")
    else:
        path = kcfg.write(doc, output or app.paths.root / "kubeconfig")
        echo(f"wrote {path}; try: kubectl --kubeconfig {path} get nodes")


COMMANDS = [status, kubeconfig]
