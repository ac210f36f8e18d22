"""Which first-boot mechanism a Raspberry Pi OS image understands.

* ``systemd`` (Bookworm, the first Trixie release): rpi-imager's
  ``firstrun.sh`` hooked with ``systemd.run=`` on ``cmdline.txt``. These
  images boot once through ``init=/usr/lib/raspberrypi-sys-mods/firstboot``
  (resize the root filesystem, then reboot).
* ``cloudinit`` / ``cloudinit-rpi`` (current Trixie images): cloud-init's
  NoCloud data source reads ``user-data``, ``meta-data`` and
  ``network-config`` from the boot partition; the images ship placeholder
  copies of them.

The Raspberry Pi Imager catalog states the format per image
(``init_format``); for local images it is detected from the boot partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from piimg.build import cmdline
from piimg.errors import ImageError
from piimg.spec.model import InitFormat

SEED_FILES: Final = ("user-data", "meta-data", "network-config")
SYS_MODS_FIRSTBOOT: Final = "init=/usr/lib/raspberrypi-sys-mods/firstboot"
_HINT: Final = "set image.init_format in piimg.yaml to systemd, cloudinit or cloudinit-rpi"


def from_name(value: str | None, *, source: str) -> InitFormat | None:
    """A catalog or spec value as an :class:`InitFormat`; ``None``/empty/auto means unknown."""
    if value is None or value in ("", "auto"):
        return None
    try:
        fmt = InitFormat(value)
    except ValueError:
        raise ImageError(
            f"{source}: init format {value!r} is not supported by piimg (supported: systemd, cloudinit, cloudinit-rpi)",
            hint=_HINT,
        ) from None
    return fmt


def detect(boot_files: Iterable[str], cmdline_text: str | bytes | None) -> InitFormat:
    """Detect the format from the boot partition's top-level file names and ``cmdline.txt``."""
    names = {n.lower() for n in boot_files}
    if any(seed in names for seed in SEED_FILES):
        return InitFormat.CLOUDINIT
    if cmdline_text is not None and SYS_MODS_FIRSTBOOT in cmdline.parse(cmdline_text):
        return InitFormat.SYSTEMD
    raise ImageError(
        "cannot tell how this image configures itself at first boot "
        "(no cloud-init seed files on the boot partition, no raspberrypi-sys-mods firstboot in cmdline.txt)",
        hint=_HINT,
    )


def resolve(
    spec_format: InitFormat,
    *,
    catalog_format: str | None,
    boot_files: Iterable[str],
    cmdline_text: str | bytes | None,
    image_name: str = "image",
) -> InitFormat:
    """The spec's explicit choice, else the catalog's, else detection."""
    if spec_format is not InitFormat.AUTO:
        return spec_format
    fmt = from_name(catalog_format, source=f"{image_name} (catalog)")
    if fmt is not None:
        return fmt
    try:
        return detect(boot_files, cmdline_text)
    except ImageError as exc:
        raise ImageError(f"{image_name}: {exc.message}", hint=exc.hint) from None
