"""What a flash target is: one small interface, a Linux and a macOS implementation.

:func:`discover` turns the path the user typed into a :class:`Device` that
says everything the safety rules need: whole disk or partition, size,
removable, read-only, what is mounted from it, and whether it holds the
running system (directly, through a partition, through LVM/dm-crypt holders
or, on macOS, through an APFS container).

Both implementations read through paths or a command runner given to their
constructor, so tests point them at a fake sysfs tree and recorded
``diskutil`` output. Nothing here writes anything.
"""

from __future__ import annotations

import os
import plistlib
import re
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from piimg.errors import CommandFailed, UnsafeTarget
from piimg.units import human_size

Kind = Literal["block", "file", "missing", "other"]

#: Mount points whose disk is "the system": never a flash target.
SYSTEM_MOUNTS: Final = frozenset({"/", "/boot", "/boot/efi", "/boot/firmware", "/efi", "/usr", "/var", "/home"})


@dataclass(frozen=True)
class Mount:
    device: str  # kernel name (sdb1, dm-0) or diskutil identifier (disk4s1)
    mountpoint: str


@dataclass(frozen=True)
class Device:
    """A flash target as found on this machine."""

    path: str  # as given by the user
    kind: Kind
    write_path: str = ""  # what to open: the resolved node; /dev/rdiskN on macOS
    whole_disk_path: str = ""  # the disk this is or belongs to (/dev/sdb, /dev/disk4)
    name: str = ""  # kernel name or diskutil identifier
    size: int = 0  # bytes
    model: str = ""
    vendor: str = ""
    removable: bool = False
    read_only: bool = False
    is_partition: bool = False
    virtual_on: tuple[str, ...] = ()  # dm/md devices: the devices below it
    system_reasons: tuple[str, ...] = ()  # why this is the system disk (empty: it is not)
    mounted: tuple[Mount, ...] = ()  # mounted file systems of the disk (partitions, holders)
    swap: tuple[str, ...] = ()  # active swap on the disk
    detail: str = ""  # e.g. a loop device's backing file
    transport: str = ""  # "usb", "mmc", "nvme", "sata", "loop", "virtual", ... ("" when unknown)
    platform: str = field(default_factory=lambda: sys.platform)

    @property
    def external(self) -> bool:
        """A disk that is not built into this machine: marked removable, an SD slot, or on USB.

        USB SSDs and NVMe enclosures (common Raspberry Pi 5 boot media) report
        removable=0; rpi-imager lists a disk when it is "removable or hotplug"
        (raspberrypi/rpi-imager#606, maintainer comment), and a USB disk is hotplug.
        """
        return self.removable or self.transport == "usb"

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.vendor, self.model) if p) or "unknown model"
    link_to: str = ""  # kind "missing" through a dangling symbolic link: where it points

    @property
    def description(self) -> str:
        """One line for the confirmation prompt."""
        if self.kind == "file":
            return f"{self.write_path or self.path}: regular file, {human_size(self.size)}"
        if self.kind == "missing":
            return f"{self.path}: new regular file"
        if self.removable:
            kind = "removable"
        elif self.transport == "usb":
            kind = "USB disk (not marked removable)"
        else:
            kind = "NOT removable"
        extra = f", {self.detail}" if self.detail else ""
        return f"{self.write_path or self.path}: {self.label}, {human_size(self.size)}, {kind}{extra}"


class Devices(Protocol):
    @property
    def dev_root(self) -> str:
        """The folder of device nodes (``/dev``): piimg never creates a file under it."""

    def discover(self, path: str) -> Device:
        """Describe the target at ``path``."""

    def disks(self) -> list[Device]:
        """Every whole disk of the machine (for the device picker and the flash station)."""

    def unmount(self, device: Device) -> None:
        """Unmount everything mounted from ``device``; raise UnsafeTarget if that fails."""

    def eject(self, device: Device) -> None:
        """Eject the medium (macOS); a no-op where that makes no sense."""


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \040 etc.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class _MountEntry:
    majmin: str
    mountpoint: str
    source: str


def parse_mountinfo(text: str) -> list[_MountEntry]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        rfields = right.split()
        source = rfields[1] if len(rfields) > 1 else ""
        out.append(_MountEntry(fields[2], _unescape(fields[4]), _unescape(source)))
    return out


def _default_runner(argv: Sequence[str]) -> bytes:
    from piimg.run import run

    return run(list(argv)).stdout or b""


class LinuxDevices:
    """Linux: /sys/class/block, /proc/self/mountinfo, /proc/swaps."""

    def __init__(
        self,
        sysfs_root: str | os.PathLike[str] = "/sys",
        mountinfo: str | os.PathLike[str] = "/proc/self/mountinfo",
        dev_root: str | os.PathLike[str] = "/dev",
        swaps: str | os.PathLike[str] = "/proc/swaps",
        runner: Callable[[Sequence[str]], bytes] = _default_runner,
    ) -> None:
        self.sys = Path(sysfs_root)
        self.mountinfo = Path(mountinfo)
        self.dev = Path(dev_root)
        self.swaps = Path(swaps)
        self.runner = runner

    @property
    def dev_root(self) -> str:
        return str(self.dev)

    # -- sysfs helpers
    def _node(self, name: str) -> Path | None:
        link = self.sys / "class" / "block" / name
        return link.resolve() if link.exists() else None

    def _name_of_source(self, source: str) -> str | None:
        """Kernel name of a /dev path as it appears in mountinfo or /proc/swaps."""
        if not source.startswith("/dev/"):
            return None
        candidate = self.dev / source[len("/dev/") :]
        name = Path(os.path.realpath(candidate)).name if candidate.exists() else Path(source).name
        return name if self._node(name) else None

    def _name_of_majmin(self, majmin: str) -> str | None:
        link = self.sys / "dev" / "block" / majmin
        return link.resolve().name if link.exists() else None

    def _children(self, node: Path, sub: str) -> list[str]:
        try:
            return sorted(p.name for p in (node / sub).iterdir())
        except OSError:
            return []

    def _holders_closure(self, names: Iterable[str]) -> set[str]:
        """``names`` plus everything stacked on them (dm, md, ...), recursively."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            node = self._node(name)
            if node is not None:
                todo += self._children(node, "holders")
        return seen

    def _mounts(self) -> list[tuple[str, str]]:
        """(kernel name, mountpoint) of every mounted block device."""
        out = []
        for entry in parse_mountinfo(_read(self.mountinfo)):
            name = self._name_of_majmin(entry.majmin) or self._name_of_source(entry.source)
            if name:
                out.append((name, entry.mountpoint))
        return out

    def _swaps(self) -> list[str]:
        out = []
        for line in _read(self.swaps).splitlines()[1:]:
            parts = line.split()
            if parts and parts[1:2] == ["partition"]:
                name = self._name_of_source(_unescape(parts[0]))
                if name:
                    out.append(name)
        return out

    def discover(self, path: str) -> Device:
        given = Path(path)
        under_dev = _is_under(given, self.dev)
        if not os.path.lexists(given):
            return Device(path, "missing", write_path=path)
        real = Path(os.path.realpath(given))
        if not os.path.exists(real):
            return _dangling(path, str(real), "linux")
        st = os.stat(real)
        if stat.S_ISREG(st.st_mode) and not (under_dev and self.dev != Path("/dev") and self._node(real.name)):
            return Device(path, "file", write_path=str(real), size=st.st_size, detail="regular file")
        node = self._node(real.name)
        if node is None or not (stat.S_ISBLK(st.st_mode) or self.dev != Path("/dev")):
            return Device(path, "other", write_path=str(real))
        is_partition = (node / "partition").exists()
        disk_node = node.parent if is_partition else node
        disk = disk_node.name
        partitions = [p.name for p in disk_node.iterdir() if (p / "partition").exists()]
        family = self._holders_closure([disk, *partitions])
        mounts = tuple(Mount(n, mp) for n, mp in self._mounts() if n in family)
        swaps = tuple(n for n in self._swaps() if n in family)
        reasons = [f"{m.device} is mounted at {m.mountpoint}" for m in mounts if m.mountpoint in SYSTEM_MOUNTS]
        reasons += [f"{n} is in use as swap" for n in swaps]
        dev_path = self.dev / real.name
        removable = _read(disk_node / "removable") == "1"
        mmc_type = _read(disk_node / "device" / "type")
        if mmc_type == "SD":
            removable = True  # built-in SD slots (mmcblkN) report removable=0; the card is removable
        model = _read(disk_node / "device" / "model") or _read(disk_node / "device" / "name")
        detail = ""
        backing = _read(disk_node / "loop" / "backing_file")
        if backing:
            detail = f"loop device backed by {backing}"
        transport = _linux_transport(disk, disk_node, mmc_type, bool(backing))
        try:
            sectors = int(_read(node / "size", "0"))
        except ValueError:
            sectors = 0
        return Device(
            path,
            "block",
            write_path=str(dev_path),
            whole_disk_path=str(self.dev / disk),
            name=real.name,
            size=sectors * 512,  # sysfs counts 512-byte sectors whatever the logical block size
            model=model,
            vendor=_read(disk_node / "device" / "vendor"),
            removable=removable,
            read_only=_read(node / "ro") == "1" or _read(disk_node / "ro") == "1",
            is_partition=is_partition,
            virtual_on=tuple(self._children(node, "slaves")),
            system_reasons=tuple(reasons),
            mounted=mounts,
            swap=swaps,
            detail=detail,
            transport=transport,
            platform="linux",
        )

    def unmount(self, device: Device) -> None:
        # Deepest mount points first, so /media/x/y goes before /media/x.
        for mount in sorted(device.mounted, key=lambda m: m.mountpoint.count("/"), reverse=True):
            try:
                self.runner(["umount", mount.mountpoint])
            except CommandFailed as exc:
                raise UnsafeTarget(
                    f"{device.path}: {mount.device} is mounted at {mount.mountpoint} and could not be unmounted: {exc.tail}"
                ) from None

    def disks(self) -> list[Device]:
        out = []
        try:
            names = sorted(p.name for p in (self.sys / "class" / "block").iterdir())
        except OSError:
            return []
        for name in names:
            node = self._node(name)
            if node is None or (node / "partition").exists() or name.startswith(_NOT_DISKS):
                continue
            if not os.path.lexists(self.dev / name):
                continue
            device = self.discover(str(self.dev / name))
            if device.kind == "block" and device.size > 0:
                out.append(device)
        return out

    def eject(self, device: Device) -> None:
        """Flush and power down a USB/SD disk (``eject`` from util-linux); loop devices stay."""
        if device.transport in ("usb", "mmc") and device.kind == "block":
            self.runner(["eject", device.whole_disk_path or device.write_path])


#: Kernel names that are never flash targets: RAM disks, compressed swap, optical drives,
#: floppies, device-mapper and md (their members are what would be written).
_NOT_DISKS: Final = ("ram", "zram", "sr", "fd", "dm-", "md")


def _linux_transport(name: str, disk_node: Path, mmc_type: str, loop: bool) -> str:
    """How the disk is attached, from its place in the sysfs device tree (what lsblk's TRAN shows)."""
    path = str(disk_node)
    if "/usb" in path:
        return "usb"
    if loop or name.startswith("loop"):
        return "loop"
    if mmc_type or name.startswith("mmcblk"):
        return "mmc"
    if name.startswith("nvme"):
        return "nvme"
    if "/ata" in path:
        return "sata"
    if "/virtual/" in path:
        return "virtual"
    return ""


def _dangling(path: str, real: str, platform: str) -> Device:
    """A symbolic link to nothing: a missing target, but one that writing "a new
    file" would create somewhere else (under /dev, if it points at a card that is gone)."""
    return Device(path, "missing", write_path=real, link_to=real, platform=platform)


def _is_under(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return False
    return True


_MAC_DISK: Final = re.compile(r"/dev/r?(disk\d+(?:s\d+)*)")


class MacDevices:
    """macOS: ``diskutil info -plist`` and ``diskutil list -plist``."""

    dev_root: Final = "/dev"

    def __init__(self, runner: Callable[[Sequence[str]], bytes] = _default_runner) -> None:
        self.runner = runner

    def _plist(self, *args: str) -> dict[str, Any]:
        data = plistlib.loads(self.runner(["diskutil", *args]))
        return data if isinstance(data, dict) else {}

    def discover(self, path: str) -> Device:
        match = _MAC_DISK.fullmatch(path)
        if not match:
            if not os.path.lexists(path):
                return Device(path, "missing", write_path=path, platform="darwin")
            real = os.path.realpath(path)
            if not os.path.exists(real):
                return _dangling(path, real, "darwin")
            st = os.stat(real)
            if stat.S_ISREG(st.st_mode) and not path.startswith("/dev/"):
                return Device(path, "file", write_path=real, size=st.st_size, detail="regular file", platform="darwin")
            return Device(path, "other", write_path=real, platform="darwin")
        ident = match.group(1)
        try:
            info = self._plist("info", "-plist", ident)
        except CommandFailed:
            return Device(path, "missing", write_path=path, platform="darwin")
        whole = str(info.get("ParentWholeDisk") or ident)
        is_partition = not info.get("WholeDisk", whole == ident)
        info_disk = self._plist("info", "-plist", whole) if is_partition else info
        listing = self._plist("list", "-plist")
        mounts, reasons = _mac_mounts(listing, whole)
        removable = bool(
            info_disk.get("RemovableMediaOrExternalDevice")
            or info_disk.get("RemovableMedia")
            or info_disk.get("Removable")
            or info_disk.get("Ejectable")
            or info_disk.get("Internal") is False
        )
        read_only = bool(info_disk.get("ReadOnlyMedia")) or info_disk.get("WritableMedia") is False
        virtual = info_disk.get("VirtualOrPhysical") == "Virtual" and bool(info_disk.get("APFSPhysicalStores"))
        stores = tuple(str(s.get("APFSPhysicalStore", "")) for s in info_disk.get("APFSPhysicalStores", []) or [])
        protocol = str(info_disk.get("BusProtocol") or "")
        transport = {"USB": "usb", "Secure Digital": "mmc", "SD": "mmc", "PCI-Express": "nvme", "SATA": "sata",
                     "Disk Image": "virtual"}.get(protocol, protocol.lower())
        return Device(
            path,
            "block",
            write_path=f"/dev/r{ident}",  # the raw device: no buffer cache, much faster
            whole_disk_path=f"/dev/{whole}",
            name=ident,
            size=int(info.get("TotalSize") or info.get("Size") or 0),
            model=str(info_disk.get("MediaName") or info_disk.get("IORegistryEntryName") or ""),
            vendor=str(info_disk.get("BusProtocol") or ""),
            removable=removable,
            read_only=read_only,
            is_partition=is_partition,
            virtual_on=stores if virtual else (),
            system_reasons=tuple(reasons),
            mounted=tuple(mounts),
            transport=transport,
            platform="darwin",
        )

    def unmount(self, device: Device) -> None:
        if not device.mounted:
            return
        try:
            self.runner(["diskutil", "unmountDisk", device.whole_disk_path])
        except CommandFailed as exc:
            raise UnsafeTarget(f"{device.path}: could not unmount its volumes: {exc.tail}") from None

    def eject(self, device: Device) -> None:
        self.runner(["diskutil", "eject", device.whole_disk_path])

    def disks(self) -> list[Device]:
        listing = self._plist("list", "-plist")
        out = []
        for ident in listing.get("WholeDisks", []) or []:
            device = self.discover(f"/dev/{ident}")
            if device.kind == "block" and device.size > 0 and not device.virtual_on:
                out.append(device)
        return out


def _mac_mounts(listing: dict[str, Any], whole: str) -> tuple[list[Mount], list[str]]:
    """Volumes mounted from disk ``whole`` (also through APFS containers) and system reasons."""
    entries = listing.get("AllDisksAndPartitions", []) or []
    # A synthesized APFS container disk lives on a partition of a physical disk.
    owner: dict[str, str] = {}
    for disk in entries:
        ident = str(disk.get("DeviceIdentifier", ""))
        owner[ident] = ident
        for part in disk.get("Partitions", []) or []:
            owner[str(part.get("DeviceIdentifier", ""))] = ident
    for disk in entries:
        for store in disk.get("APFSPhysicalStores", []) or []:
            phys = str(store.get("DeviceIdentifier", ""))
            owner[str(disk.get("DeviceIdentifier", ""))] = owner.get(phys, re.sub(r"s\d+\Z", "", phys))
    mounts: list[Mount] = []
    reasons: list[str] = []
    for disk in entries:
        ident = str(disk.get("DeviceIdentifier", ""))
        if whole not in (ident, _root_disk(ident, owner)):
            continue
        vols = [disk, *(disk.get("Partitions", []) or []), *(disk.get("APFSVolumes", []) or [])]
        for vol in vols:
            vid = str(vol.get("DeviceIdentifier", ident))
            # The sealed system volume is mounted at / as a snapshot, not as the volume itself.
            points = [vol.get("MountPoint")] + [s.get("SnapshotMountPoint") for s in vol.get("MountedSnapshots", []) or []]
            for mp in points:
                if not mp:
                    continue
                mounts.append(Mount(vid, str(mp)))
                if mp == "/" or str(mp).startswith("/System/Volumes"):
                    via = f" (APFS container {ident})" if ident != whole else ""
                    reasons.append(f"{vid}{via} is mounted at {mp}")
    return mounts, reasons


def _root_disk(ident: str, owner: dict[str, str]) -> str:
    seen = set()
    while owner.get(ident, ident) != ident and ident not in seen:
        seen.add(ident)
        ident = owner[ident]
    return ident


def for_this_machine() -> Devices:
    if sys.platform == "darwin":
        return MacDevices()
    return LinuxDevices()
