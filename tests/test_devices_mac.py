"""macOS device discovery and the refusal rules, from recorded ``diskutil -plist`` output."""

from __future__ import annotations

import pytest

from piimg.errors import UnsafeTarget
from piimg.flash import safety
from piimg.flash.devices import MacDevices
from tests.devicefakes import FakeDiskutil, mac_machine

IMAGE = 2 * 1024**3


@pytest.fixture()
def machine() -> tuple[MacDevices, FakeDiskutil]:
    return mac_machine()


def refusal(devices: MacDevices, path: str, *, force: bool = False) -> str:
    with pytest.raises(UnsafeTarget) as info:
        safety.prepare(devices, devices.discover(path), IMAGE, force=force)
    assert "\n" not in info.value.message and path in info.value.message
    return info.value.message


@pytest.mark.parametrize("path", ["/dev/disk4", "/dev/rdisk4"])
def test_disk_and_rdisk_are_the_same_card(machine: tuple[MacDevices, FakeDiskutil], path: str) -> None:
    devices, _ = machine
    d = devices.discover(path)
    assert d.name == "disk4" and d.write_path == "/dev/rdisk4" and d.whole_disk_path == "/dev/disk4"
    assert d.removable and not d.is_partition and d.size == 31914983424
    assert d.model == "SD Card Reader"
    assert [m.mountpoint for m in d.mounted] == ["/Volumes/bootfs"]


def test_mounted_card_is_unmounted_with_diskutil(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, runner = machine
    d = safety.prepare(devices, devices.discover("/dev/rdisk4"), IMAGE, force=False)
    assert d.mounted == ()
    assert ["diskutil", "unmountDisk", "/dev/disk4"] in runner.calls


def test_unmount_failure_refused(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    assert "could not unmount" in refusal(devices, "/dev/disk8")


@pytest.mark.parametrize("path", ["/dev/disk0", "/dev/rdisk0", "/dev/disk3"])
def test_system_disk_refused_through_the_apfs_container(machine: tuple[MacDevices, FakeDiskutil], path: str) -> None:
    devices, _ = machine
    message = refusal(devices, path, force=True)
    assert "holds the running system" in message and "mounted at /" in message


def test_partition_refused(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    message = refusal(devices, "/dev/disk4s1")
    assert "is a partition" in message and "/dev/disk4" in message


def test_read_only_refused(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    assert "read-only" in refusal(devices, "/dev/rdisk5")


def test_too_small_refused(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    assert "too small" in refusal(devices, "/dev/disk6")


def test_internal_disk_needs_force(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    assert "not a removable disk" in refusal(devices, "/dev/disk7")
    safety.prepare(devices, devices.discover("/dev/disk7"), IMAGE, force=True)


def test_missing_disk_refused(machine: tuple[MacDevices, FakeDiskutil]) -> None:
    devices, _ = machine
    assert "no such device" in refusal(devices, "/dev/disk9", force=True)
