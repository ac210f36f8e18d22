"""Init format: spec, then catalog, then detection from the boot partition.

The cmdline.txt and file lists are the real ones of each release
(:mod:`tests.piosfacts`, from pi-gen at the commits in tests/data/pios/SOURCES).
"""

from __future__ import annotations

import pytest

from piimg.build import initformat
from piimg.errors import ConfigError, ImageError
from piimg.spec.model import InitFormat
from tests import piosfacts

DISK = "5e3da0c1"
BOOKWORM = piosfacts.cmdline("bookworm", DISK).encode()
TRIXIE_2025_10 = piosfacts.cmdline("trixie-2025-10-01", DISK).encode()
TRIXIE = piosfacts.cmdline("trixie", DISK).encode()
NO_HINT = b"console=tty1 root=PARTUUID=1-02 rootwait quiet splash\n"  # no init=, no seed, no resize


def _names(flavour: str) -> list[str]:
    return sorted(piosfacts.boot_files(flavour, DISK))


def test_fixtures_are_what_the_audit_describes() -> None:
    assert BOOKWORM.endswith(b"rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n")
    assert TRIXIE_2025_10.endswith(b"rootwait resize\n") and b"init=" not in TRIXIE_2025_10
    assert "user-data" not in _names("trixie-2025-10-01") and "user-data" in _names("trixie")


@pytest.mark.parametrize(
    ("files", "cmdline", "expected"),
    [
        (_names("bookworm"), BOOKWORM, InitFormat.SYSTEMD),
        (_names("trixie"), TRIXIE, InitFormat.CLOUDINIT),
        (_names("trixie-2025-10-01"), TRIXIE_2025_10, InitFormat.CLOUDINIT),  # no seed files, no init=
        (["CONFIG.TXT", "USER-DATA"], TRIXIE, InitFormat.CLOUDINIT),  # names are case-insensitive on FAT
        (["user-data"], BOOKWORM, InitFormat.CLOUDINIT),  # seed files win
    ],
)
def test_detect(files: list[str], cmdline: bytes, expected: InitFormat) -> None:
    assert initformat.detect(files, cmdline) is expected


def test_undetectable_suggests_the_setting() -> None:
    with pytest.raises(ImageError) as err:
        initformat.detect(["config.txt", "cmdline.txt"], NO_HINT)
    assert "image.init_format" in (err.value.hint or "")


def test_spec_choice_wins() -> None:
    fmt = initformat.resolve(InitFormat.CLOUDINIT_RPI, catalog_format="systemd", boot_files=[], cmdline_text=BOOKWORM)
    assert fmt is InitFormat.CLOUDINIT_RPI


@pytest.mark.parametrize("value", ["systemd", "cloudinit", "cloudinit-rpi"])
def test_catalog_value_used_on_auto(value: str) -> None:
    fmt = initformat.resolve(InitFormat.AUTO, catalog_format=value, boot_files=[], cmdline_text=BOOKWORM)
    assert fmt.value == value


@pytest.mark.parametrize("flavour", ["trixie-2025-10-01", "trixie"])
def test_catalog_systemd_on_trixie_gives_cloudinit(flavour: str) -> None:
    # Trixie's first boot is a systemd boot: the firstrun.sh hook cannot work there
    text = piosfacts.cmdline(flavour, DISK)
    fmt = initformat.resolve(InitFormat.AUTO, catalog_format="systemd", boot_files=_names(flavour), cmdline_text=text)
    assert fmt is InitFormat.CLOUDINIT


@pytest.mark.parametrize("flavour", ["trixie-2025-10-01", "trixie"])
def test_explicit_systemd_on_trixie_is_refused(flavour: str) -> None:
    with pytest.raises(ConfigError) as err:
        initformat.resolve(InitFormat.SYSTEMD, catalog_format=None, boot_files=_names(flavour),
                           cmdline_text=piosfacts.cmdline(flavour, DISK), image_name="t.img")
    assert err.value.key == "image.init_format"
    assert "image.init_format" in err.value.message and "t.img" in err.value.message
    assert "init=/usr/lib/raspberrypi-sys-mods/firstboot" in err.value.message


def test_explicit_systemd_on_bookworm_is_fine() -> None:
    fmt = initformat.resolve(InitFormat.SYSTEMD, catalog_format=None, boot_files=_names("bookworm"), cmdline_text=BOOKWORM)
    assert fmt is InitFormat.SYSTEMD


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
        initformat.resolve(InitFormat.AUTO, catalog_format=None, boot_files=[], cmdline_text=NO_HINT, image_name="odd.img")


def test_bullseye_is_refused() -> None:
    # Bullseye's last cmdline.txt has the sys-mods firstboot too: only config.txt tells it apart
    bullseye = piosfacts.cmdline("bullseye", DISK)
    assert initformat.SYS_MODS_FIRSTBOOT in bullseye
    with pytest.raises(ImageError, match=r"b\.img.*Bullseye"):
        initformat.refuse_unsupported(bullseye, piosfacts.config_txt("bullseye"), image_name="b.img")
    with pytest.raises(ImageError, match="Bookworm and later"):
        initformat.refuse_unsupported(b"root=/dev/mmcblk0p2 init=/usr/lib/raspi-config/init_resize.sh\n", None)


@pytest.mark.parametrize("flavour", piosfacts.FLAVOURS)
def test_supported_releases_pass(flavour: str) -> None:
    initformat.refuse_unsupported(piosfacts.cmdline(flavour, DISK), piosfacts.config_txt(flavour))
