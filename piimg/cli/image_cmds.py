"""piimg os list, piimg fetch."""

from __future__ import annotations

from pathlib import Path

import click

from piimg.cli.common import App, echo, echo_json, pass_app


@click.group("os")
def os_group() -> None:
    """Browse the Raspberry Pi Imager catalog."""


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


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
    if catalog is None:
        # the spec's catalog when there is a spec, the default one otherwise
        from piimg.spec import model as spec_model

        if app.paths.spec.exists():
            spec = app.spec()
            catalog, base_dir = spec.image.catalog, spec.base_dir
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
    for r in [head, *rows]:
        echo("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])


@click.command()
@click.option("--offline", is_flag=True, help="Use only the cache; say what is missing.")
@click.option("--verify", is_flag=True, help="Re-hash a cached image fully.")
@click.option("--image", metavar="PATH|URL", help="Fetch this image instead of image.os / image.url.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of --image as downloaded.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def fetch(app: App, offline: bool, verify: bool, image: str | None, sha256: str | None, as_json: bool) -> None:
    """Download, verify and cache the base image; print its path."""
    from piimg.fetch.source import obtain_base_image

    base = obtain_base_image(app.spec(), image=image, sha256=sha256, offline=offline, verify=verify,
                             reporter=app.reporter)
    if as_json:
        echo_json({"path": str(base.path), "sha256": base.sha256, "download_sha256": base.download_sha256,
                   "init_format": base.init_format, "name": base.name, "size": base.size})
        return
    echo(str(base.path))


COMMANDS = [os_group, fetch]
