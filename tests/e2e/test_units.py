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


def test_netdiag_is_valid_sh(tmp_path: Path) -> None:
    script = tmp_path / "netdiag.sh"
    script.write_text(baseimage.NETDIAG_SH)
    subprocess.run(["sh", "-n", str(script)], check=True)
    subprocess.run(["shellcheck", "-s", "sh", str(script)], check=True)
    probe = tmp_path / "probe.sh"
    probe.write_text(baseimage.PROBE_SH)
    subprocess.run(["shellcheck", "-s", "sh", str(probe)], check=True)


def test_netdiag_runs_every_section_when_tools_are_missing(tmp_path: Path) -> None:
    """Only the tools a minimal system surely has (no ip, nmcli, networkctl, cloud-init, journalctl):
    every section still prints, every line carries the prefix, the script ends with 0."""
    import shutil

    script = tmp_path / "netdiag.sh"
    script.write_text(baseimage.NETDIAG_SH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sed", "cat", "ls", "tail", "grep"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run([str(bin_dir / "sh"), str(script)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "LC_ALL": "C"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(ln.startswith(baseimage.DIAG_PREFIX + " ") for ln in lines), lines[:5]
    headers = [ln for ln in lines if "=====" in ln]
    assert len(headers) == baseimage.NETDIAG_SH.count("\nsection ")
    assert any("ip: not found" in ln for ln in lines), lines  # a missing tool is reported, not fatal
    assert any(ln.endswith("===== /proc/net/route") for ln in headers)


@pytest.mark.parametrize(("state", "done"), [("done", True), ("failed", False), ("waiting", False), ("running", False)])
def test_probe_asks_for_the_diagnosis_unless_first_boot_is_done(tmp_path: Path, state: str, done: bool) -> None:
    """The probe's test reads status.json as first boot's own store writes it (steps carry states too)."""
    from piimg.firstboot.store import Store

    store = Store(str(tmp_path / "state.json"), str(tmp_path / "status.json"), "k8s-master")
    store.begin(["scrub", "network"])
    store.step_start("scrub")
    store.step_end("scrub", "done")  # a step is "done" whatever the run's state
    if state == "done":
        store.finish()
    elif state in ("failed", "waiting"):
        store.step_start("network")
        store.step_end("network", state, "timed out after 600s waiting for a default route")
    argv = ["sh", "-c", baseimage.FIRSTBOOT_DONE_SH + ' "$1"', "sh", str(tmp_path / "status.json")]
    assert (subprocess.run(argv).returncode == 0) is done
    missing = ["sh", "-c", baseimage.FIRSTBOOT_DONE_SH + ' "$1" 2>/dev/null', "sh", str(tmp_path / "absent.json")]
    assert subprocess.run(missing).returncode != 0


def test_diagnosis_lines_are_collected_from_the_whole_log() -> None:
    from tests.e2e.test_e2e import diag_lines

    log = "\n".join([
        "[   12.0] cloud-init[301]: ok",
        f"{baseimage.DIAG_PREFIX} ===== ip route",
        f"{baseimage.DIAG_PREFIX} default via 10.0.2.1 dev eth0",
        "[   13.1] systemd[1]: Starting something",
        f"[   13.2] probe.sh[400]: {baseimage.DIAG_PREFIX} 10.0.2.0/23 dev eth0",
        f"{baseimage.DIAG_PREFIX} ",
    ])
    assert diag_lines(log) == ["===== ip route", "default via 10.0.2.1 dev eth0", "10.0.2.0/23 dev eth0", ""]
