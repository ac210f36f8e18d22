"""piimg flash."""

from __future__ import annotations

import os
from pathlib import Path

import click

from piimg.build import lastbuild
from piimg.cli.common import App, as_root_command, confirm, echo, pass_app
from piimg.errors import NeedsRoot
from piimg.flash import verb
from piimg.flash.devices import Device, for_this_machine
from piimg.units import human_size


@click.command()
@click.argument("args", nargs=-1, metavar="[IMAGE] DEVICE")
@click.option("--node", metavar="NAME", help="Which built node image to flash (when several were built).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-verify", is_flag=True, help="Skip the read-back verification.")
@click.option("--force", is_flag=True, help="Allow a regular file or a non-removable disk as target.")
@click.option("--no-eject", is_flag=True, help="macOS: leave the card attached after writing.")
@click.option(
    "--bmap",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Use this bmaptool .bmap file instead of computing the block map from the image.",
)
@pass_app
def flash(
    app: App,
    args: tuple[str, ...],
    node: str | None,
    yes: bool,
    no_verify: bool,
    force: bool,
    no_eject: bool,
    bmap: Path | None,
) -> None:
    """Write IMAGE (default: the last build) to DEVICE, safely and verified.

    Only the blocks that hold data are written (the block map comes from the
    image's own FAT and ext4 metadata), the partition table cleared first and
    written last, and every written block is read back from the device and compared.

    \b
    Examples:
      piimg flash /dev/sdb                 the last build (one node)
      piimg flash --node k8s-w1 /dev/rdisk4
      piimg flash raspios.img /dev/mmcblk0
    """
    if len(args) == 1:
        image = lastbuild.load(app.paths.last_build).image_for(node)
        target = args[0]
    elif len(args) == 2:
        if node:
            raise click.UsageError("give either IMAGE or --node, not both")
        image, target = args
    else:
        raise click.UsageError("expected [IMAGE] DEVICE")

    def ask(device: Device) -> bool:
        size = Path(image).stat().st_size
        packed = verb.compression_of(image)
        app.reporter.info(f"image:  {image} ({human_size(size)}{f', {packed}-compressed' if packed else ''})")
        app.reporter.info(f"target: {device.description}")
        for mount in device.mounted:
            app.reporter.info(f"        {mount.device} mounted at {mount.mountpoint} (will be unmounted)")
        if yes:
            return True
        return confirm(f"Overwrite {device.write_path}? Everything on it will be lost", nothing_done="nothing was written")

    try:
        result = verb.flash(
            image,
            target,
            devices=for_this_machine(),
            confirm=ask,
            verify=not no_verify,
            force=force,
            eject=not no_eject,
            bmap=bmap,
            reporter=app.reporter,
        )
    except NeedsRoot as exc:
        if os.geteuid() == 0:
            raise
        raise NeedsRoot(exc.message, hint=f"run it as root: {as_root_command()}   (or add yourself to the disk group)") from None
    echo(result.summary())


COMMANDS = [flash]
