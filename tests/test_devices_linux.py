"""Linux device discovery and the refusal rules, on a fake sysfs/mountinfo tree only."""

from __future__ import annotations

from pathlib import Path

import pytest

from piimg.errors import UnsafeTarget
from piimg.flash import safety
from piimg.flash.devices import LinuxDevices, Mount
from tests.devicefakes import linux_machine

GB = 1000**3
IMAGE = 2 * 1024**3


@pytest.fixture()
def machine(tmp_path: Path) -> tuple[LinuxDevices, object, Path]:
    return linux_machine(tmp_path)


def refusal(devices: LinuxDevices, dev: Path, name: str, *, force: bool = False, size: int = IMAGE) -> str:
    path = str(dev / name)
    with pytest.raises(UnsafeTarget) as info:
        safety.prepare(devices, devices.discover(path), size, force=force)
    message = info.value.message
    assert "\n" not in message and path in message
    return message


def test_usb_card_reader_is_described(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    d = devices.discover(str(dev / "sdb"))
    assert d.kind == "block" and not d.is_partition and d.removable and not d.read_only
    assert d.size == 62333952 * 512
    assert (d.vendor, d.model) == ("Generic", "SD/MMC Reader")
    assert {m.mountpoint for m in d.mounted} == {"/media/user/bootfs", "/media/user/rootfs"}
    assert d.system_reasons == ()
    assert "SD/MMC Reader" in d.description and "removable" in d.description


def test_symlink_under_dev_resolves_to_the_disk(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    d = devices.discover(str(dev / "disk/by-id/usb-Generic_SD_MMC_Reader-0:0"))
    assert d.name == "sdb" and d.write_path == str(dev / "sdb")


def test_system_disk_found_through_luks_and_lvm(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    d = devices.discover(str(dev / "sda"))
    assert any(r == "dm-1 is mounted at /" for r in d.system_reasons)
    assert Mount("sda1", "/boot/efi") in d.mounted
    assert "sda3" in d.swap
    message = refusal(devices, dev, "sda", force=True)
    assert "holds the running system" in message and "dm-1 is mounted at /" in message


def test_system_partition_and_holders_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    assert "running system" in refusal(devices, dev, "sda2", force=True)
    assert "running system" in refusal(devices, dev, "mapper/cryptroot", force=True)


def test_partition_refused_with_the_disk_suggested(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    message = refusal(devices, dev, "mmcblk0p2")
    assert "is a partition" in message and str(dev / "mmcblk0") in message


def test_mounted_card_is_unmounted_then_accepted(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, umount, dev = machine
    d = safety.prepare(devices, devices.discover(str(dev / "sdb")), IMAGE, force=False)
    assert d.mounted == ()
    assert sorted(c[1] for c in umount.calls) == ["/media/user/bootfs", "/media/user/rootfs"]  # type: ignore[attr-defined]


def test_mount_that_cannot_be_unmounted_is_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    message = refusal(devices, dev, "sdc")
    assert "could not be unmounted" in message and "/media/user/Card Stuck" in message and "busy" in message


def test_swap_disk_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    assert "in use as swap" in refusal(devices, dev, "sde", force=True)


def test_too_small_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    message = refusal(devices, dev, "sdd")
    assert "too small (954.0 MiB) for the image (2.0 GiB)" in message  # binary units, as everywhere


def test_read_only_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    assert "read-only" in refusal(devices, dev, "mmcblk1", force=True)


def test_sd_slot_counts_as_removable(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    d = safety.prepare(devices, devices.discover(str(dev / "mmcblk0")), IMAGE, force=False)
    assert d.removable and d.model == "SD32G"


def test_non_removable_needs_force(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    message = refusal(devices, dev, "nvme0n1")
    assert "not a removable disk" in message and "--force" in message and "WD Blue" in message
    safety.prepare(devices, devices.discover(str(dev / "nvme0n1")), IMAGE, force=True)


def test_loop_device_needs_force_and_names_its_file(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    d = devices.discover(str(dev / "loop0"))
    assert "backed by /var/tmp/disk.img" in d.description
    assert "not a removable disk" in refusal(devices, dev, "loop0")


def test_missing_dev_path_refused_and_not_created(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    message = refusal(devices, dev, "sdz", force=True)
    assert "no such device" in message
    assert not (dev / "sdz").exists()


def test_regular_file_under_dev_refused(machine: tuple[LinuxDevices, object, Path]) -> None:
    devices, _, dev = machine
    assert "regular file under" in refusal(devices, dev, "sdq", force=True)


def test_regular_file_needs_force(machine: tuple[LinuxDevices, object, Path], tmp_path: Path) -> None:
    devices, _, dev = machine
    target = tmp_path / "card.img"
    target.write_bytes(b"")
    with pytest.raises(UnsafeTarget, match="regular file, not a device; add --force"):
        safety.check(devices.discover(str(target)), IMAGE, force=False, dev_root=str(dev))
    safety.check(devices.discover(str(target)), IMAGE, force=True, dev_root=str(dev))
    new = tmp_path / "new.img"
    with pytest.raises(UnsafeTarget, match="does not exist"):
        safety.check(devices.discover(str(new)), IMAGE, force=False, dev_root=str(dev))
    safety.check(devices.discover(str(new)), IMAGE, force=True, dev_root=str(dev))


def test_real_dev_null_is_not_a_target() -> None:
    d = LinuxDevices().discover("/dev/null")
    assert d.kind == "other"
    with pytest.raises(UnsafeTarget, match="not a disk"):
        safety.check(d, IMAGE, force=True)


def _root_disk_name() -> str | None:
    """Kernel name of the block device holding / on this machine, if it is one."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            link = Path("/sys/dev/block") / fields[2]
            if link.exists():
                return link.resolve().name
    return None


@pytest.mark.skipif(not Path("/sys/class/block").is_dir(), reason="no sysfs (not Linux)")
def test_this_machines_system_disk_is_recognised() -> None:
    """Read-only: discover the real disk holding / and check the refusal (nothing is opened for writing)."""
    name = _root_disk_name()
    if name is None or not Path("/dev", name).exists():
        pytest.skip("/ is not on a block device here (overlay, container)")
    device = LinuxDevices().discover(f"/dev/{name}")
    assert any(r.endswith("is mounted at /") for r in device.system_reasons), device
    with pytest.raises(UnsafeTarget, match="holds the running system"):
        safety.check(device, 1, force=True)
