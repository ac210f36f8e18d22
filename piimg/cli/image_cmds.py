"""piimg os list, piimg fetch."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, PiimgGroup, echo, echo_json, pass_app
from piimg.units import human_size


@click.group("os", cls=PiimgGroup)
def os_group() -> None:
    """Browse the Raspberry Pi Imager catalog."""


def _size(n: int | None) -> str:
    return "?" if n is None else human_size(n)


@os_group.command("list")
@click.option("--catalog", metavar="URL|FILE", help="Catalog to read (default: image.catalog).")
@click.option("--offline", is_flag=True, help="Use the copy cached by the last online run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def os_list(app: App, catalog: str | None, offline: bool, as_json: bool) -> None:
    """List the images of a Raspberry Pi Imager catalog (os_list JSON).

    The SLUG column is what image.os takes; it names the newest release.
    """
    from piimg.fetch.source import list_catalog

    base_dir: Path | None = None
    chosen: str | None = None  # the spec's image.os, marked in the table
    if app.paths.spec.exists():
        chosen = None if app.spec().image.url else app.spec().image.os
    if catalog is None:
        # the spec's catalog when there is a spec, the default one otherwise
        from piimg.spec import model as spec_model

        if app.paths.spec.exists():
            spec = app.spec()
            catalog, base_dir = spec.image.catalog, spec.paths.root
        else:
            catalog = spec_model.DEFAULT_CATALOG
    entries = list_catalog(catalog, base_dir=base_dir, offline=offline, reporter=app.reporter)
    if as_json:
        echo_json([e.to_json() for e in entries])
        return
    if not entries:
        echo(f"no images in {catalog}")
        return
    rows = [
        (e.slug, e.name, e.release_date or "-", _size(e.image_download_size), e.init_format or "-",
         ",".join(e.devices) or "-")
        for e in entries
    ]
    head = ("SLUG", "NAME", "RELEASED", "DOWNLOAD", "INIT", "DEVICES")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    marks = ["  "] + ["* " if r[0] == chosen else "  " for r in rows]
    for mark, r in zip(marks, [head, *rows], strict=True):
        echo(mark + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    if chosen is not None and any(r[0] == chosen for r in rows):
        echo(f"* image.os in {app.paths.spec}")


@click.command()
@click.option("--offline", is_flag=True, help="Use only the cache; say what is missing.")
@click.option("--verify", is_flag=True, help="Re-hash cached files fully.")
@click.option("--image", metavar="PATH|URL", help="Fetch this image instead of image.os / image.url.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of --image as downloaded.")
@click.option("--image-only", is_flag=True, help="Only the base image, not k3s and the Helm charts.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def fetch(app: App, offline: bool, verify: bool, image: str | None, sha256: str | None, image_only: bool,
          as_json: bool) -> None:
    """Download, verify and cache the base image, k3s and the Helm charts; print the image's path.

    k3s (install script at the pinned tag, binary, with cluster.airgap the
    images) is fetched for the image's architecture; `piimg build` then
    needs no network. Each cached file is named on stderr.
    """
    from piimg.build.images import base_arch
    from piimg.fetch import artifacts
    from piimg.fetch.source import Fetcher, obtain_base_image

    spec = app.spec()
    if not image_only:
        artifacts.check_pins(spec)
    base = obtain_base_image(spec, image=image, sha256=sha256, offline=offline, verify=verify,
                             reporter=app.reporter)
    cluster = None
    if not image_only:
        arch = base_arch(spec, base, app.reporter)
        cluster = artifacts.obtain_cluster_artifacts(
            spec, arch, Fetcher(offline=offline, verify=verify, reporter=app.reporter)
        )
        files = [cluster.k3s.install_sh, cluster.k3s.binary, *([cluster.k3s.airgap_images] if cluster.k3s.airgap_images else []),
                 *(c.file for c in cluster.charts.values())]
        for f in files:
            app.reporter.info(f"cached: {f.name} (sha256 {f.sha256}) {f.path}")
    if as_json:
        out: dict[str, object] = {"path": str(base.path), "sha256": base.sha256, "download_sha256": base.download_sha256,
                                  "init_format": base.init_format, "name": base.name, "size": base.size}
        if cluster is not None:
            k = cluster.k3s
            out["k3s"] = {
                "version": k.version, "arch": k.arch,
                **{key: {"path": str(f.path), "sha256": f.sha256, "url": f.url}
                   for key, f in (("install_sh", k.install_sh), ("binary", k.binary), ("airgap_images", k.airgap_images))
                   if f is not None},
            }
            out["charts"] = {name: {"version": c.pin.version, "path": str(c.file.path), "sha256": c.file.sha256,
                                    "url": c.file.url} for name, c in cluster.charts.items()}
        echo_json(out)
        return
    echo(str(base.path))


COMMANDS = [os_group, fetch]
