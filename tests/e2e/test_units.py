"""Fast checks of the e2e harness pieces (no qemu, no root): they run with plain pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import baseimage, qemu


def test_qemu_network_is_restricted_to_the_forwards(tmp_path: Path) -> None:
    argv = qemu.qemu_argv(
        tmp_path / "x.img",
        kernel=tmp_path / "k",
        initrd=tmp_path / "i",
        append="console=ttyS0 root=PARTUUID=abcd1234-02",
        serial_log=tmp_path / "serial.log",
        forwards=[qemu.Forward("10.0.2.100", 80, 4321)],
    )
    netdev = argv[argv.index("-netdev") + 1].split(",")
    assert netdev[0] == "user" and "restrict=on" in netdev
    rules = [opt for opt in netdev if opt.startswith(("guestfwd=", "hostfwd="))]
    assert rules == [f"guestfwd=tcp:10.0.2.100:80-cmd:{sys.executable} {qemu.RELAY} 127.0.0.1 4321"]
    assert "-no-reboot" in argv and argv[argv.index("-accel") + 1].startswith("tcg")
    assert argv[argv.index("-append") + 1] == "console=ttyS0 root=PARTUUID=abcd1234-02"
    assert argv[argv.index("-serial") + 1] == f"file:{tmp_path / 'serial.log'}"


def test_relay_refuses_anything_but_loopback() -> None:
    proc = subprocess.run([sys.executable, str(qemu.RELAY), "192.0.2.1", "80"], capture_output=True, text=True, input="")
    assert proc.returncode == 2 and "non-loopback" in proc.stderr


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("kernel=vmlinuz\ninitramfs initrd.img followkernel\n", ("vmlinuz", "initrd.img")),
        ("# nothing\n[all]\n", ("kernel8.img", "initramfs8")),
        ("kernel=kernel_2712.img # pi 5\ninitramfs initramfs_2712 followkernel\n", ("kernel_2712.img", "initramfs_2712")),
    ],
)
def test_firmware_files_from_config_txt(config: str, expected: tuple[str, str]) -> None:
    assert qemu._firmware_files(config) == expected


def test_cmdline_is_pi_os_like() -> None:
    line = baseimage.cmdline("0badcafe", "systemd")
    assert line.endswith("\n") and line.count("\n") == 1
    words = line.split()
    assert "root=PARTUUID=0badcafe-02" in words and "rootfstype=ext4" in words and "rootwait" in words
    assert baseimage.SYS_MODS_INIT in words
    assert baseimage.SYS_MODS_INIT not in baseimage.cmdline("0badcafe", "cloudinit").split()


def test_flavours_carry_their_releases_boot_files() -> None:
    from tests import piosfacts

    for flavour in baseimage.FLAVOURS:
        files = baseimage.boot_files("0badcafe", flavour)
        release = baseimage.FLAVOUR_RELEASES[flavour]
        # the release's words, but for the console qemu shows and quiet
        real = [w for w in piosfacts.cmdline(release, "0badcafe").split() if not w.startswith("console=") and w != "quiet"]
        assert files["cmdline.txt"].split()[1:] == real
        assert files["config.txt"].startswith(piosfacts.config_txt(release))
        assert qemu._firmware_files(files["config.txt"]) == ("vmlinuz", "initrd.img")
    assert "user-data" in baseimage.boot_files("0badcafe", "cloudinit")
    first_trixie = baseimage.boot_files("0badcafe", "cloudinit-2025-10-01")
    assert not {"user-data", "meta-data", "network-config"} & set(first_trixie)
    assert "init=" not in first_trixie["cmdline.txt"] and first_trixie["cmdline.txt"].split()[-1] == "resize"


def test_cache_key_follows_the_package_list() -> None:
    a = baseimage._key("bookworm", "amd64", "http://m", ",".join(baseimage.packages("bookworm")))
    b = baseimage._key("trixie", "amd64", "http://m", ",".join(baseimage.packages("trixie")))
    c = baseimage._key("bookworm", "amd64", "http://m", ",".join((*baseimage.packages("bookworm"), "vim")))
    assert len({a, b, c}) == 3
