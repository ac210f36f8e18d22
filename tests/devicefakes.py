"""Fake machines for the device and safety tests: a sysfs tree and recorded diskutil output.

Nothing here touches a real device: LinuxDevices reads a tree under tmp_path
built from tests/data/devices/linux/tree.json, MacDevices gets a runner that
answers from the plists in tests/data/devices/mac/.
"""

from __future__ import annotations

import json
import plistlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from piimg.errors import CommandFailed
from piimg.flash.devices import LinuxDevices, MacDevices

DATA = Path(__file__).parent / "data" / "devices"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def build_sysfs(root: Path) -> tuple[Path, Path]:
    """Materialise the fake machine under ``root``; returns (sysfs, dev)."""
    spec = json.loads((DATA / "linux" / "tree.json").read_text())
    sysfs, dev = root / "sys", root / "dev"
    for name, info in spec["blocks"].items():
        node = sysfs / info["devpath"] / name
        node.mkdir(parents=True)
        for key in ("size", "removable", "ro"):
            _write(node / key, str(info[key]))
        for key in ("model", "vendor", "name", "type"):
            if key in info:
                _write(node / "device" / key, info[key])
        if "backing_file" in info:
            _write(node / "loop" / "backing_file", info["backing_file"])
        members = {name: info, **info.get("partitions", {})}
        for member, minfo in members.items():
            mnode = node if member == name else node / member
            mnode.mkdir(exist_ok=True)
            if member != name:
                _write(mnode / "size", str(minfo["size"]))
                _write(mnode / "partition", member[-1])
                _write(mnode / "ro", "0")
            for sub in ("holders", "slaves"):
                (mnode / sub).mkdir(exist_ok=True)
                for other in minfo.get(sub, []):
                    (mnode / sub / other).touch()
            for link in (sysfs / "class" / "block" / member, sysfs / "dev" / "block" / minfo["majmin"]):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(mnode)
            _write(dev / member, "")  # stands in for the device node
    for link, target in spec["dev_links"].items():
        (dev / link).parent.mkdir(parents=True, exist_ok=True)
        (dev / link).symlink_to(target)
    for name in spec["dev_regular_files"]:
        _write(dev / name, "left behind by dd")
    return sysfs, dev


class FakeUmount:
    """Stands in for ``umount``: edits the fake mountinfo, or fails for a busy mount."""

    def __init__(self, mountinfo: Path, busy: Sequence[str] = ("/media/user/Card Stuck",)) -> None:
        self.mountinfo = mountinfo
        self.busy = set(busy)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> bytes:
        self.calls.append(list(argv))
        assert argv[0] == "umount", argv
        mountpoint = argv[1]
        if mountpoint in self.busy:
            raise CommandFailed(list(argv), 32, f"umount: {mountpoint}: target is busy.\n")
        escaped = mountpoint.replace(" ", "\\040")
        lines = [ln for ln in self.mountinfo.read_text().splitlines() if ln.split()[4] != escaped]
        self.mountinfo.write_text("\n".join(lines) + "\n")
        return b""


def linux_machine(tmp: Path) -> tuple[LinuxDevices, FakeUmount, Path]:
    sysfs, dev = build_sysfs(tmp)
    mountinfo = tmp / "mountinfo"
    shutil.copy(DATA / "linux" / "mountinfo", mountinfo)
    umount = FakeUmount(mountinfo)
    devices = LinuxDevices(sysfs_root=sysfs, mountinfo=mountinfo, dev_root=dev, swaps=DATA / "linux" / "swaps", runner=umount)
    return devices, umount, dev


class FakeDiskutil:
    """Answers ``diskutil`` from the recorded plists; unmountDisk of disk8 fails (a busy volume)."""

    def __init__(self) -> None:
        self.listing: dict[str, Any] = plistlib.loads((DATA / "mac" / "list.plist").read_bytes())
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> bytes:
        self.calls.append(list(argv))
        assert argv[0] == "diskutil", argv
        verb = argv[1]
        if verb == "list":
            return plistlib.dumps(self.listing)
        if verb == "info":
            sample = DATA / "mac" / f"info-{argv[-1]}.plist"
            if not sample.exists():
                raise CommandFailed(list(argv), 1, f"Could not find disk: {argv[-1]}\n")
            return sample.read_bytes()
        if verb == "unmountDisk":
            ident = argv[2].removeprefix("/dev/")
            if ident == "disk8":
                raise CommandFailed(list(argv), 1, "Unmount of disk8 failed: at least one volume could not be unmounted\n")
            for disk in self.listing["AllDisksAndPartitions"]:
                if disk["DeviceIdentifier"] == ident:
                    for part in disk.get("Partitions", []):
                        part.pop("MountPoint", None)
            return b""
        if verb == "eject":
            return b""
        raise AssertionError(f"unexpected diskutil call {argv}")


def mac_machine() -> tuple[MacDevices, FakeDiskutil]:
    runner = FakeDiskutil()
    return MacDevices(runner=runner), runner
