"""piimg manifests."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, echo, pass_app
from piimg.manifests.bundle import render_bundle
from piimg.manifests.k3s import MASKED
from piimg.spec.secrets import Secrets


@click.command()
@click.option("--node", metavar="NAME", help="Render for this node (default: the initial server).")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per addon into DIR (the k3s config to DIR/k3s/NODE/config.yaml).",
)
@click.option("--show-secrets", is_flag=True, help="Include the k3s token and BGP password instead of <hidden>.")
@pass_app
def manifests(app: App, node: str | None, output: Path | None, show_secrets: bool) -> None:
    """Render the Kubernetes manifests that first boot will deploy.

    Prints the node's /etc/rancher/k3s/config.yaml and, for the initial
    server, the files k3s auto-deploys from /var/lib/rancher/k3s/server/manifests
    (MetalLB in BGP mode, its configuration, the ingress controller), as one
    multi-document YAML. Secrets are hidden unless --show-secrets is given.
    With -o DIR, the addons are written to DIR (one file each) and the k3s
    config to DIR/k3s/NODE/config.yaml.

    Chart archives that `piimg fetch` or `piimg build` cached are embedded
    (chartContent), as on the card; before that, the HelmCharts name
    repository and version, and a note says so. Nothing is downloaded.
    """
    from piimg.fetch.artifacts import cached_charts
    from piimg.fetch.source import Fetcher

    # Hidden secrets need no secrets file: reviewing must not create one.
    secrets = app.secrets() if show_secrets else Secrets(k3s_token=MASKED)
    spec = app.spec()
    charts = cached_charts(spec, Fetcher(reporter=app.reporter))
    bundle = render_bundle(spec, secrets, node, mask_secrets=not show_secrets, charts=charts)
    if charts is None and bundle.addons:
        app.reporter.info("chart archives not fetched yet: HelmCharts shown by repository and version; "
                          "`piimg fetch` caches them, and the card embeds them (chartContent)")
    for warning in bundle.warnings:
        app.reporter.warn(warning)
    if output is None:
        click.echo(bundle.stream(), nl=False)
        return
    for path in bundle.write(output):
        echo(f"wrote {path}")
    if bundle.masked:
        app.reporter.info("secrets hidden (<hidden>); use --show-secrets to include them")


COMMANDS = [manifests]
