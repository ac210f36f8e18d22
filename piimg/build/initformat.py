"""Which first-boot mechanism a Raspberry Pi OS image understands.

* ``systemd`` (Bookworm): rpi-imager's ``firstrun.sh`` hooked with
  ``systemd.run=`` on ``cmdline.txt``. Bookworm's first boot is not a systemd
  boot: ``init=/usr/lib/raspberrypi-sys-mods/firstboot`` grows the root file
  system, takes itself off ``cmdline.txt`` and reboots; the second boot runs
  the hook (pi-gen@d7a31c6a, branch bookworm-arm64:
  ``stage2/01-sys-tweaks/00-patches/07-resize-init.diff``). Only such images
  can use it: on Trixie the first boot is already a systemd boot.
* ``cloudinit`` / ``cloudinit-rpi`` (Trixie): cloud-init's NoCloud data
  source reads ``user-data``, ``meta-data`` and ``network-config`` from the
  boot partition (``seedfrom: file:///boot/firmware``). Current images ship
  placeholder copies of them (pi-gen@314262cb:``stage2/04-cloud-init/01-run.sh``);
  the first Trixie release (2025-10-01) ships none and has no ``init=`` but the
  initramfs ``resize`` word (pi-gen@7dadcf1f, tag
  2025-10-01-raspios-trixie-arm64: ``stage2/04-cloud-init/01-run.sh:12-14``,
  ``stage1/00-boot-files/files/cmdline.txt``), and still runs cloud-init.

Bullseye and older (FAT at ``/boot``, dhcpcd instead of NetworkManager) are
not supported: refused here rather than half-configured on the Pi.

The Raspberry Pi Imager catalog states the format per image
(``init_format``); for local images it is detected from the boot partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from piimg.build import cmdline
from piimg.errors import ConfigError, ImageError
from piimg.spec.model import InitFormat

SEED_FILES: Final = ("user-data", "meta-data", "network-config")
SYS_MODS_FIRSTBOOT: Final = "init=/usr/lib/raspberrypi-sys-mods/firstboot"
#: Trixie's initramfs grows the root file system when cmdline.txt says so.
TRIXIE_RESIZE: Final = "resize"
#: Bullseye's resize boot (before raspberrypi-sys-mods' firstboot took it over).
BULLSEYE_INIT_RESIZE: Final = "init=/usr/lib/raspi-config/init_resize.sh"
#: Bullseye's config.txt points at the overlays under /boot; Bookworm's at
#: /boot/firmware (pi-gen@1f6508fd, bullseye-arm64, and @d7a31c6a,
#: bookworm-arm64: ``stage1/00-boot-files/files/config.txt``).
BULLSEYE_CONFIG_MARK: Final = "/boot/overlays/README"
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


def _words(cmdline_text: str | bytes | None) -> list[str]:
    return cmdline.parse(cmdline_text) if cmdline_text is not None else []


def has_sysmods_firstboot(cmdline_text: str | bytes | None) -> bool:
    """True when the image's first boot is raspberrypi-sys-mods' ``init=`` boot (Bookworm)."""
    return SYS_MODS_FIRSTBOOT in _words(cmdline_text)


def refuse_unsupported(cmdline_text: str | bytes | None, config_text: str | bytes | None, *, image_name: str = "image") -> None:
    """Refuse Bullseye and older: the FAT at /boot and dhcpcd, which piimg's first boot does not configure."""
    if isinstance(config_text, bytes):
        config_text = config_text.decode("utf-8", "replace")
    if BULLSEYE_INIT_RESIZE in _words(cmdline_text) or BULLSEYE_CONFIG_MARK in (config_text or ""):
        raise ImageError(
            f"{image_name}: this looks like Raspberry Pi OS Bullseye or older (boot partition at /boot, dhcpcd "
            "networking); piimg supports Bookworm and later only",
            hint="use a Raspberry Pi OS Bookworm or Trixie image (image.os or --image)",
        )


def detect(boot_files: Iterable[str], cmdline_text: str | bytes | None) -> InitFormat:
    """Detect the format from the boot partition's top-level file names and ``cmdline.txt``."""
    names = {n.lower() for n in boot_files}
    words = _words(cmdline_text)
    if any(seed in names for seed in SEED_FILES):
        return InitFormat.CLOUDINIT
    if SYS_MODS_FIRSTBOOT in words:
        return InitFormat.SYSTEMD
    if TRIXIE_RESIZE in words:
        return InitFormat.CLOUDINIT  # Trixie 2025-10-01: cloud-init, but no placeholder seed files
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
    """The spec's explicit choice, else the catalog's, else detection.

    ``systemd`` is only ever used on an image whose first boot is the
    sys-mods ``init=`` boot: an explicit choice otherwise is a
    :class:`ConfigError` on ``image.init_format``, and a catalog that says
    ``systemd`` for such an image (Trixie 2025-10-01) gives way to cloud-init.
    """
    firstboot = has_sysmods_firstboot(cmdline_text)
    if spec_format is InitFormat.SYSTEMD and not firstboot:
        raise ConfigError(
            "image.init_format",
            f"systemd needs an image whose first boot is {SYS_MODS_FIRSTBOOT} (Raspberry Pi OS Bookworm); "
            f"{image_name} has none in cmdline.txt, so its first boot is a systemd boot that cannot run the "
            "first-run hook (Trixie)",
            hint="use image.init_format: auto (cloud-init on this image) or cloudinit",
        )
    if spec_format is not InitFormat.AUTO:
        return spec_format
    fmt = from_name(catalog_format, source=f"{image_name} (catalog)")
    if fmt is InitFormat.SYSTEMD and not firstboot:
        # The first Trixie release is "systemd" in the catalog, yet its first
        # boot is a systemd boot: firstrun.sh customisation does not work there
        # (rpi-imager#1386, #1444); it runs cloud-init from the boot partition.
        return InitFormat.CLOUDINIT
    if fmt is not None:
        return fmt
    try:
        return detect(boot_files, cmdline_text)
    except ImageError as exc:
        raise ImageError(f"{image_name}: {exc.message}", hint=exc.hint) from None
