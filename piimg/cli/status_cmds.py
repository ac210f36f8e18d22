"""piimg status, piimg kubeconfig."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, not_implemented, pass_app


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@not_implemented("issue 9: status")
def status(app: App, as_json: bool) -> None:
    """End-to-end health: nodes, k3s, MetalLB, router BGP, route, HTTP."""


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Where to write it (default: ./kubeconfig).")
@pass_app
@not_implemented("issue 9: kubeconfig")
def kubeconfig(app: App, output: Path | None) -> None:
    """Fetch the cluster's kubeconfig from the server node over SSH."""


COMMANDS = [status, kubeconfig]
