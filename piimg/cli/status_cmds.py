"""piimg status, piimg kubeconfig."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from piimg.build import lastbuild
from piimg.cli.common import App, echo, echo_json, paint, pass_app
from piimg.errors import LastBuildError
from piimg.identity import store as identity_store
from piimg.status import kubeconfig as kcfg
from piimg.status import watch as watching
from piimg.status.checks import Options, run_checks
from piimg.status.kubeaccess import KubeAccess, resolve
from piimg.status.model import Check, State, all_ok
from piimg.status.routerchk import RouterOpener
from piimg.units import clock_time

if TYPE_CHECKING:
    from piimg.spec.model import Spec

_MARK = {State.OK: "ok", State.FAIL: "FAIL", State.PENDING: "pending", State.SKIPPED: "skipped"}


def _router_opener(app: App) -> RouterOpener:
    from piimg.status.router_access import opener

    return opener(app.spec())


def _built_formats(app: App) -> dict[str, str]:
    """Each node's init format from the last build, if there is one (it tells the cloud-init seed race apart)."""
    try:
        record = lastbuild.load(app.paths.last_build)
    except LastBuildError:
        return {}
    return {name: entry.init_format for name, entry in record.nodes.items()}


_COLOR: dict[State, dict[str, Any]] = {State.OK: {"fg": "green"}, State.FAIL: {"fg": "red", "bold": True},
                                      State.PENDING: {"fg": "yellow"}, State.SKIPPED: {"dim": True}}


def _print(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        echo(f"{paint(f'{_MARK[c.state]:<8}', **_COLOR[c.state])} {c.name:<{width}}  {c.detail}")


def check_host(spec: Spec, check: Check) -> str | None:
    """The address a check asked (``status --json``): the node, the router, the API server, the LB IP."""
    what, _, rest = check.name.partition(" ")
    if what in ("node", "firstboot"):
        node = next((n for n in spec.nodes if n.hostname == rest), None)
        return str(node.address) if node is not None else None
    if what == "router":
        return str(spec.router.host)
    if what == "http":
        return rest or None
    return str(spec.initial_server.address)  # the Kubernetes API and what it reports


def status_json(spec: Spec, checks: list[Check]) -> dict[str, Any]:
    """``status --json``: schema in the README (JSON output)."""
    return {
        "schema": 1,
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cluster": spec.cluster.name,
        "ok": all_ok(checks),
        "checks": [{**c.to_dict(), "host": check_host(spec, c)} for c in checks],
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True,
              help="Re-run until every check passes or --timeout expires; a line whenever the state changes.")
@click.option("--timeout", default=1800, show_default=True, type=click.IntRange(min=0), metavar="SECONDS",
              help="How long --watch waits.")
@click.option("--interval", default=15, show_default=True, type=click.IntRange(min=1), metavar="SECONDS",
              help="Pause between --watch rounds.")
@click.option(
    "--kubeconfig", "kubeconfig_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Kubeconfig to use (context cluster.name). Default: minted from .piimg/k3s-ca for a cluster piimg "
         "built, else ./kubeconfig, else $KUBECONFIG / ~/.kube/config with a context named cluster.name, "
         "else fetched from the server over SSH.",
)
@click.option("--no-router", is_flag=True, help="Skip the router checks.")
@pass_app
def status(
    app: App, as_json: bool, watch: bool, timeout: int, interval: int, kubeconfig_path: Path | None, no_router: bool
) -> int:
    """End-to-end health: nodes, first boot, k3s, MetalLB, router BGP, routes, HTTP.

    Each check prints ok, FAIL, pending or skipped with one line of detail,
    in the order a person would debug. Exit status 0 only when all pass.
    Run `piimg status --watch` after flashing and walking away: for a
    cluster piimg built it needs no kubeconfig or ssh step first (node host
    keys are pinned in .piimg/known_hosts, the admin certificate is made from
    .piimg/k3s-ca).
    """
    spec = app.spec()
    state = app.paths.state_dir
    known = identity_store.known_hosts_path(state)
    ca = identity_store.load_existing(state)
    if kubeconfig_path is not None and not kubeconfig_path.is_absolute() and not kubeconfig_path.exists():
        kubeconfig_path = app.paths.root / kubeconfig_path

    def access() -> KubeAccess:
        return resolve(spec, root=app.paths.root, ca=ca, explicit=kubeconfig_path,
                       fetch=lambda: kcfg.fetch(spec, kcfg.server_target(spec, known_hosts=known)))

    minted = access() if ca is not None and kubeconfig_path is None else None  # one certificate per run
    router = None if no_router else _router_opener(app)
    formats = _built_formats(app)

    def check_once() -> list[Check]:
        kube = minted or access()  # each round: a kubeconfig may have appeared (k3s.yaml, piimg kubeconfig)
        return run_checks(spec, Options(kubeconfig=kube, known_hosts=known, router=router, init_formats=formats))

    took = ""
    if watch:
        limit = clock_time(timeout)  # beside the elapsed time: how much of the wait is left

        def report(r: watching.Round) -> None:
            first = r.waiting[0]
            app.reporter.info(f"[{clock_time(r.elapsed)} / {limit}] {r.passed}/{len(r.checks)} checks ok; "
                              f"waiting for {first.name}: {first.detail}")

        outcome = watching.watch(check_once, timeout=timeout, interval=interval, on_round=report)
        last = outcome.last
        took = f" after {clock_time(last.elapsed)}"
        if outcome.gave_up:
            app.reporter.warn(f"--watch gave up{took} (--timeout {timeout}): {last.passed}/{len(last.checks)} checks ok; "
                              f"still not ok: {', '.join(c.name for c in last.waiting)}")
        checks = list(last.checks)
    else:
        checks = check_once()
    if as_json:
        echo_json(status_json(spec, checks))
    else:
        _print(checks)
        failed = [c for c in checks if c.state is not State.OK]
        echo(f"\n{len(checks) - len(failed)}/{len(checks)} checks ok{took}"
             + ("" if failed else ": the cluster answers end to end"))
    return 0 if all_ok(checks) else 1


@click.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to write it (default: ./kubeconfig beside piimg.yaml).",
)
@click.option("--merge", is_flag=True, help="Merge into ~/.kube/config ($KUBECONFIG) without touching other contexts.")
@click.option("--ssh", "over_ssh", is_flag=True,
              help="Fetch /etc/rancher/k3s/k3s.yaml from the server over SSH instead of minting one.")
@pass_app
def kubeconfig(app: App, output: Path | None, merge: bool, over_ssh: bool) -> None:
    """Write a kubeconfig for the cluster (context and names: cluster.name).

    For a cluster piimg built, it is made here, with no SSH and before the
    nodes even boot: an admin client certificate (group system:masters)
    signed by the cluster's client CA in .piimg/k3s-ca, the server CA pinned.
    Otherwise (no .piimg/k3s-ca, or --ssh) it reads /etc/rancher/k3s/k3s.yaml
    from the first server with the system ssh client (host key checked
    against .piimg/known_hosts when piimg made it). Either way it points at
    https://SERVER:6443. Written with mode 0600.
    """
    spec = app.spec()
    ca = None if over_ssh else identity_store.load_existing(app.paths.state_dir)
    if ca is not None:
        doc = kcfg.mint(spec, ca)
    else:
        known = identity_store.known_hosts_path(app.paths.state_dir)
        doc = kcfg.fetch(spec, kcfg.server_target(spec, known_hosts=known))
    if merge:
        path = kcfg.write(doc, output or kcfg.default_merge_path(), merge_into_existing=True)
        echo(f"merged context {spec.cluster.name} into {path}; try: kubectl --context {spec.cluster.name} get nodes")
    else:
        path = kcfg.write(doc, output or app.paths.root / "kubeconfig")
        echo(f"wrote {path}; try: kubectl --kubeconfig {path} get nodes")


COMMANDS = [status, kubeconfig]
