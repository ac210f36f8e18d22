"""Boot a disk image the way a Pi's firmware would, under qemu (TCG).

The firmware of a Pi reads ``cmdline.txt`` and loads the kernel and initrd
from the FAT boot partition; here qemu does that part: both files and the
command line are read from the image's FAT before every boot (so a hook that
edits ``cmdline.txt`` changes the next boot, as on a Pi).

- ``-accel tcg`` (KVM does not work on these machines) under ``timeout``;
- ``-no-reboot``: a reboot ends a boot (qemu exits 0);
- the serial console goes to a log file;
- networking: qemu's user-mode network with ``restrict=on`` (the guest reaches
  nothing outside) plus one ``guestfwd`` per address the node needs. Each
  guest connection starts ``relay.py``, which joins it to a server the test
  runs on 127.0.0.1. No other route exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tests.e2e import imgfs

RELAY: Final = Path(__file__).with_name("relay.py")

# The guest network: the spec's default lab subnet, gateway and a DHCP pool
# outside the node addresses. slirp's own address (``host=``) is the gateway.
NET: Final = "10.0.2.0/23"
GATEWAY: Final = "10.0.2.1"
DHCP_START: Final = "10.0.3.1"
DNS: Final = "10.0.2.3"


@dataclass(frozen=True)
class Forward:
    """Guest connections to ``guest_addr:guest_port`` reach 127.0.0.1:``host_port``."""

    guest_addr: str
    guest_port: int
    host_port: int

    def netdev_option(self) -> str:
        # cmd: starts one relay per guest connection (a chardev target would
        # connect once at start-up and carry a single connection only).
        cmd = f"{sys.executable} {RELAY} 127.0.0.1 {self.host_port}"
        return f"guestfwd=tcp:{self.guest_addr}:{self.guest_port}-cmd:{cmd}"


@dataclass
class Boot:
    """One boot: how it ended, how long it took, what the console said."""

    number: int
    returncode: int
    seconds: float
    log_path: Path
    cmdline: str
    argv: list[str] = field(default_factory=list)

    @property
    def timed_out(self) -> bool:
        return self.returncode in (124, 137)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def qemu_argv(
    image: Path,
    *,
    kernel: Path,
    initrd: Path,
    append: str,
    serial_log: Path,
    forwards: list[Forward],
    memory_mib: int = 1024,
    cpus: int = 2,
) -> list[str]:
    netdev = ",".join(
        [
            "user",
            "id=net0",
            "restrict=on",
            f"net={NET}",
            f"host={GATEWAY}",
            f"dhcpstart={DHCP_START}",
            f"dns={DNS}",
            *(f.netdev_option() for f in forwards),
        ]
    )
    return [
        "qemu-system-x86_64",
        "-accel", "tcg,thread=multi",
        "-machine", "q35",
        "-cpu", "max",
        "-smp", str(cpus),
        "-m", str(memory_mib),
        "-nodefaults",
        "-display", "none",
        "-no-reboot",
        "-serial", f"file:{serial_log}",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", append,
        "-drive", f"file={image},format=raw,if=virtio,cache=unsafe",
        "-netdev", netdev,
        "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip


def boot(
    image: Path,
    *,
    number: int,
    workdir: Path,
    forwards: list[Forward],
    timeout: float = 300,
    boot_offset: int | None = None,
) -> Boot:
    """Boot ``image`` once (until the guest reboots, powers off, or ``timeout``)."""
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("qemu-system-x86_64 is missing (Debian package qemu-system-x86)")
    fat = imgfs.Fat(image, boot_offset if boot_offset is not None else imgfs.partition_offset(image, 1))
    config = fat.read_text("config.txt")
    kernel_name, initrd_name = _firmware_files(config)
    fw = workdir / f"firmware-{number}"
    fw.mkdir(parents=True, exist_ok=True)
    kernel, initrd = fw / "kernel", fw / "initrd"
    fat.get(kernel_name, kernel)
    fat.get(initrd_name, initrd)
    append = fat.read_text("cmdline.txt").strip()
    if "\n" in append:
        raise AssertionError(f"cmdline.txt is not a single line: {append!r}")
    serial_log = workdir / f"boot{number}.log"
    serial_log.unlink(missing_ok=True)
    argv = qemu_argv(image, kernel=kernel, initrd=initrd, append=append, serial_log=serial_log, forwards=forwards)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["timeout", "--kill-after=10", str(int(timeout)), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    seconds = time.monotonic() - t0
    if proc.stdout.strip():
        with open(serial_log, "a") as f:
            f.write("\n[qemu] " + proc.stdout)
    return Boot(number=number, returncode=proc.returncode, seconds=seconds, log_path=serial_log, cmdline=append, argv=argv)


def _firmware_files(config_txt: str) -> tuple[str, str]:
    """``kernel=`` and ``initramfs`` from config.txt (the Pi firmware's defaults otherwise)."""
    kernel, initrd = "kernel8.img", "initramfs8"
    for raw in config_txt.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("kernel="):
            kernel = line.split("=", 1)[1].strip()
        elif line.startswith("initramfs "):
            initrd = line.split()[1]
    return kernel, initrd
