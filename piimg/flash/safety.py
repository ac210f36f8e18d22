"""The refusal rules of ``piimg flash``: checked before a single byte is written.

Each rule is one sentence naming the device and the reason, raised as
:class:`~piimg.errors.UnsafeTarget`. The order matters: the most dangerous
mistake (the system disk) is reported first, whatever else is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

from piimg.errors import PartitionNotDisk, UnsafeTarget
from piimg.flash.devices import Device, Devices
from piimg.units import human_size


def check(device: Device, image_size: int, *, force: bool, dev_root: str = "/dev", allow_usb: bool = False) -> None:
    """Raise :class:`UnsafeTarget` unless ``image_size`` bytes may be written to ``device``.

    Mounted file systems are not refused here: :func:`prepare` unmounts them
    and refuses if that fails.
    """
    path = device.path
    root = os.path.abspath(dev_root) + os.sep
    # the path as typed, and where a symbolic link on the way leads
    under_dev = any(
        os.path.abspath(p).startswith(root) or (device.platform == "darwin" and p.startswith("/dev/"))
        for p in (path, device.link_to or path, os.path.realpath(path))
    )
    if device.kind == "missing":
        if under_dev:
            via = f" (a symbolic link to {device.link_to}, which does not exist)" if device.link_to else ""
            raise UnsafeTarget(
                f"{path}: no such device{via}; piimg never creates a file under {dev_root}",
                hint="plug in the card and check the name (Linux: lsblk; macOS: diskutil list)",
            )
        if device.link_to:
            raise UnsafeTarget(
                f"{path}: is a symbolic link to {device.link_to}, which does not exist",
                hint="give the file or device itself, not a dangling link to it",
            )
        if not force:
            raise UnsafeTarget(f"{path}: does not exist; to write the image into a new regular file, add --force")
        if not Path(path).parent.is_dir():
            raise UnsafeTarget(f"{path}: its folder does not exist")
        return
    if device.kind == "other":
        raise UnsafeTarget(f"{path}: not a disk or a regular file")
    if device.kind == "file":
        if under_dev:
            raise UnsafeTarget(
                f"{path}: is a regular file under {dev_root}, not a device (left behind by an earlier dd to a missing card?)"
            )
        if not force:
            raise UnsafeTarget(f"{path}: is a regular file, not a device; add --force to write the image into it")
        return
    if device.system_reasons:
        raise UnsafeTarget(f"{path}: holds the running system ({'; '.join(device.system_reasons)}); refusing to touch it")
    if device.swap:
        raise UnsafeTarget(f"{path}: is in use as swap ({', '.join(device.swap)})")
    if device.is_partition:
        raise PartitionNotDisk(
            f"{path}: is a partition, not a whole disk; flash the disk {device.whole_disk_path} instead",
            disk=device.whole_disk_path,
        )
    if device.virtual_on:
        raise UnsafeTarget(f"{path}: is a virtual device on top of {', '.join(device.virtual_on)}, not a disk")
    if device.read_only:
        raise UnsafeTarget(f"{path}: is read-only (is the card's write-protect switch on?)")
    if device.size < image_size:
        raise UnsafeTarget(
            f"{path}: is too small ({human_size(device.size)}) for the image ({human_size(image_size)})"
        )
    if not (device.removable or (allow_usb and device.transport == "usb")) and not force:
        raise UnsafeTarget(
            f"{path}: is not a removable disk ({device.description}); add --force if you are sure",
        )


def refusal(device: Device, image_size: int, *, dev_root: str = "/dev", allow_usb: bool = True) -> str | None:
    """Why ``device`` would be refused as a target for ``image_size`` bytes (None: acceptable)."""
    try:
        check(device, image_size, force=False, dev_root=dev_root, allow_usb=allow_usb)
    except UnsafeTarget as exc:
        return exc.message
    return None


def prepare(devices: Devices, device: Device, image_size: int, *, force: bool, allow_usb: bool = False) -> Device:
    """Check, unmount what is mounted from the target, and check again.

    Returns the device as found after unmounting. Refuses if anything stays
    mounted. ``allow_usb``: a USB disk that does not say it is removable (USB
    SSDs, NVMe enclosures) is accepted without ``force``; the CLI allows that
    only when it asks the user, after showing the disk.
    """
    check(device, image_size, force=force, dev_root=devices.dev_root, allow_usb=allow_usb)
    if device.kind != "block" or not device.mounted:
        return device
    devices.unmount(device)
    again = devices.discover(device.path)
    check(again, image_size, force=force, dev_root=devices.dev_root, allow_usb=allow_usb)
    if again.mounted:
        still = ", ".join(f"{m.device} at {m.mountpoint}" for m in again.mounted)
        raise UnsafeTarget(f"{device.path}: still mounted after unmounting ({still})")
    return again
