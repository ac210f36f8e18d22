"""What real Raspberry Pi OS images put on their boot partition, from the upstream sources.

Every value comes from a file under ``tests/data/pios/`` copied byte for byte
from upstream; ``tests/data/pios/SOURCES`` names each one's repo@commit:path.
Used by tests/imagegen.py, tests/e2e/baseimage.py and the format tests, so
that fixtures look like the images users flash, not like what piimg expects.

Flavours:

- ``bookworm``: pi-gen bookworm-arm64. cmdline.txt is stage1's file patched by
  stage2/01-sys-tweaks/00-patches/07-resize-init.diff (``quiet
  init=/usr/lib/raspberrypi-sys-mods/firstboot``); no cloud-init seed files.
- ``trixie-2025-10-01``: the first Trixie release. cmdline.txt ends in
  ``rootwait resize`` (no ``init=``); cloud-init is installed but the seed
  files are commented out in stage2/04-cloud-init/01-run.sh:12-14.
- ``trixie``: current Trixie (tag 2026-06-18). Same cmdline.txt; the
  placeholder ``user-data``, ``meta-data`` and ``network-config`` are
  installed on the boot partition.
- ``bullseye``: for refusal tests only (FAT at /boot).

In every flavour export-image/04-set-partuuid/00-run.sh:13 replaces
``ROOTDEV`` with ``PARTUUID=<disk id>-02``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

DATA: Final = Path(__file__).parent / "data" / "pios"
FLAVOURS: Final = ("bookworm", "trixie-2025-10-01", "trixie")
SEED_NAMES: Final = ("user-data", "meta-data", "network-config")


def _read(flavour: str, name: str) -> str:
    return (DATA / flavour / name).read_text()


def cmdline(flavour: str, disk_id: str) -> str:
    """cmdline.txt as the released image has it, for a disk with ``disk_id`` (8 hex digits)."""
    if flavour in ("bookworm", "bullseye"):
        # the patch's "+" line is the whole new file
        (line,) = [ln[1:] for ln in _read(flavour, "cmdline.diff").splitlines() if ln.startswith("+console=")]
        text = line + "\n"
    else:
        text = _read(flavour, "cmdline.txt")
    return text.replace("ROOTDEV", f"PARTUUID={disk_id}-02")


def config_txt(flavour: str) -> str:
    return _read(flavour, "config.txt")


def seed_files(flavour: str) -> dict[str, str]:
    """The cloud-init placeholder files on the boot partition (none before the 2025-11 Trixie images)."""
    if flavour != "trixie":
        return {}
    return {name: _read("trixie", name) for name in SEED_NAMES}


def boot_files(flavour: str, disk_id: str) -> dict[str, str]:
    """cmdline.txt, config.txt and the seed files of ``flavour``."""
    return {"cmdline.txt": cmdline(flavour, disk_id), "config.txt": config_txt(flavour), **seed_files(flavour)}


def imager_fixup() -> str:
    """raspberrypi-sys-mods' initramfs script that edits Imager's firstrun.sh and cmdline.txt."""
    return (DATA / "sys-mods" / "imager_fixup").read_text()


def nocloud_cfg() -> str:
    """cloud-init's NoCloud configuration as the first Trixie release ships it (seed from /boot/firmware).

    pi-gen removed the file after that release (it moved into
    rpi-cloud-init-mods, whose source is not public); the 2025-10-01 one is
    the last whose contents are known.
    """
    return (DATA / "trixie-2025-10-01" / "99_raspberry-pi.cfg").read_text()
