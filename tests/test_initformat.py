"""Init format: spec, then catalog, then detection from the boot partition."""

from __future__ import annotations

import pytest

from piimg.build import initformat
from piimg.errors import ImageError
from piimg.spec.model import InitFormat

BOOKWORM = b"console=tty1 root=PARTUUID=1-02 rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
TRIXIE = b"console=tty1 root=PARTUUID=1-02 rootwait quiet splash\n"


@pytest.mark.parametrize(
    ("files", "cmdline", "expected"),
    [
        (["config.txt", "cmdline.txt"], BOOKWORM, InitFormat.SYSTEMD),
        (["config.txt", "cmdline.txt", "user-data", "meta-data", "network-config"], TRIXIE, InitFormat.CLOUDINIT),
        (["CONFIG.TXT", "USER-DATA"], TRIXIE, InitFormat.CLOUDINIT),  # names are case-insensitive on FAT
        (["user-data"], BOOKWORM, InitFormat.CLOUDINIT),  # seed files win
    ],
)
def test_detect(files: list[str], cmdline: bytes, expected: InitFormat) -> None:
    assert initformat.detect(files, cmdline) is expected


def test_undetectable_suggests_the_setting() -> None:
    with pytest.raises(ImageError) as err:
        initformat.detect(["config.txt", "cmdline.txt"], TRIXIE)
    assert "image.init_format" in (err.value.hint or "")


def test_spec_choice_wins() -> None:
    fmt = initformat.resolve(InitFormat.CLOUDINIT_RPI, catalog_format="systemd", boot_files=[], cmdline_text=BOOKWORM)
    assert fmt is InitFormat.CLOUDINIT_RPI


@pytest.mark.parametrize("value", ["systemd", "cloudinit", "cloudinit-rpi"])
def test_catalog_value_used_on_auto(value: str) -> None:
    fmt = initformat.resolve(InitFormat.AUTO, catalog_format=value, boot_files=[], cmdline_text=TRIXIE)
    assert fmt.value == value


def test_auto_without_catalog_detects() -> None:
    fmt = initformat.resolve(InitFormat.AUTO, catalog_format=None, boot_files=["cmdline.txt"], cmdline_text=BOOKWORM)
    assert fmt is InitFormat.SYSTEMD


@pytest.mark.parametrize("value", ["rpi-preseed", "none", "ignition"])
def test_unsupported_catalog_formats_are_clear_errors(value: str) -> None:
    with pytest.raises(ImageError) as err:
        initformat.resolve(InitFormat.AUTO, catalog_format=value, boot_files=["user-data"], cmdline_text=TRIXIE, image_name="x.img")
    assert value in err.value.message and "x.img" in err.value.message
    assert "image.init_format" in (err.value.hint or "")


def test_detection_error_names_the_image() -> None:
    with pytest.raises(ImageError, match=r"odd\.img"):
        initformat.resolve(InitFormat.AUTO, catalog_format=None, boot_files=[], cmdline_text=TRIXIE, image_name="odd.img")
