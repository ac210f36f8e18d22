"""The device picker, USB disks, and the flash station (``piimg flash --all``).

The machine is the fake laptop of tests/devicefakes.py (a fake /sys and /dev
tree). Cards are "plugged in" by adding a disk to that tree between two
looks of the watcher, the way the kernel adds /sys/class/block/<name> on a
hot-plug event; the disk's /dev node is a symbolic link to a loop device the
test created, so every byte piimg writes lands in the test's own file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from piimg.errors import CommandFailed
from piimg.flash import safety, station
from piimg.flash.devices import LinuxDevices
from tests.conftest import run_ok
from tests.devicefakes import DATA, FakeUmount, build_sysfs
from tests.flashfixtures import CARD, PATTERN, TWO_NODE_SPEC, Loop, assert_own_loop, make_loop
from tests.imagegen import GeneratedImage, make_image, tools_available
from tests.releaseserver import Published

__all__ = ["make_loop"]



class Machine:
    """The fake laptop, with a hot-plug slot and a recording ``umount``/``eject`` runner."""

    def __init__(self, root: Path) -> None:
        self.sys, self.dev = build_sysfs(root)
        self.mountinfo = root / "mountinfo"
        shutil.copy(DATA / "linux" / "mountinfo", self.mountinfo)
        self.umount = FakeUmount(self.mountinfo)
        self.ejected: list[str] = []
        self.on_eject: Callable[[str], None] = lambda path: None
        self.devices = LinuxDevices(sysfs_root=self.sys, mountinfo=self.mountinfo, dev_root=self.dev,
                                    swaps=DATA / "linux" / "swaps", runner=self.run)

    def run(self, argv: Sequence[str]) -> bytes:
        if argv[0] == "eject":
            self.ejected.append(argv[1])
            self.on_eject(argv[1])
            return b""
        return self.umount(argv)

    def plug(self, loop: Loop, *, model: str = "Card Reader", removable: str = "1", slot: int = 9) -> str:
        """A USB card reader with a card appears; its /dev node is the test's loop device."""
        name = loop.device.removeprefix("/dev/")
        if os.path.lexists(self.sys / "class" / "block" / name):  # the fake laptop's own loop0 has the same name
            self.unplug(loop)
        node = self.sys / f"devices/pci0000:00/0000:00:14.0/usb3/3-{slot}/3-{slot}:1.0/host2{slot}/block" / name
        (node / "device").mkdir(parents=True)
        (node / "holders").mkdir()
        (node / "slaves").mkdir()
        (node / "size").write_text(f"{CARD // 512}\n")
        (node / "removable").write_text(f"{removable}\n")
        (node / "ro").write_text("0\n")
        (node / "device" / "model").write_text(f"{model}\n")
        (node / "device" / "vendor").write_text("Generic\n")
        (self.sys / "class" / "block" / name).symlink_to(node)
        (self.dev / name).symlink_to(loop.device)
        return str(self.dev / name)

    def unplug(self, loop: Loop) -> None:
        name = loop.device.removeprefix("/dev/")
        link = self.sys / "class" / "block" / name
        shutil.rmtree(link.resolve())
        link.unlink()
        (self.dev / name).unlink()


@pytest.fixture()
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path / "laptop")


# ---------------------------------------------------------------- listing and USB disks


def test_disks_lists_whole_disks_only(machine: Machine) -> None:
    names = [d.name for d in machine.devices.disks()]
    assert names == sorted(names)
    assert {"sda", "sdb", "sdc", "sdf", "nvme0n1", "mmcblk0", "loop0"} <= set(names)
    assert not any(n.startswith("dm-") or (n[-1:].isdigit() and n.startswith("sd")) for n in names)


def test_what_the_picker_offers_and_why_not(machine: Machine) -> None:
    from piimg.cli.flash_cmd import _candidates

    ok, refused = _candidates(machine.devices, 2 * 1024**3)
    assert [d.name for d in ok] == ["mmcblk0", "sdb", "sdc", "sdf"]
    why = {d.name: reason for d, reason in refused}
    assert "holds the running system" in why["sda"] and "swap" in why["sde"]
    assert "not a removable disk" in why["nvme0n1"] and "not a removable disk" in why["loop0"]
    assert "too small" in why["sdd"] and "read-only" in why["mmcblk1"]


def test_usb_ssd_is_asked_for_not_forced(machine: Machine) -> None:
    """S11: a USB NVMe enclosure (RM=0) is offered when piimg asks; with --yes it still needs --force."""
    ssd = machine.devices.discover(str(machine.dev / "sdf"))
    assert ssd.transport == "usb" and not ssd.removable and ssd.external
    assert "USB disk (not marked removable)" in ssd.description
    assert safety.refusal(ssd, 2 * 1024**3, allow_usb=True) is None
    assert "add --force" in (safety.refusal(ssd, 2 * 1024**3, allow_usb=False) or "")
    internal = machine.devices.discover(str(machine.dev / "nvme0n1"))
    assert internal.transport == "nvme" and "not a removable disk" in (safety.refusal(internal, 1, allow_usb=True) or "")


def test_matches_filters_size_and_model(machine: Machine) -> None:
    sdb = machine.devices.discover(str(machine.dev / "sdb"))  # 31.9 GB "Generic SD/MMC Reader"
    assert station.matches(sdb, size=32 * 10**9, model=None) is None
    assert "not the expected" in (station.matches(sdb, size=64 * 10**9, model=None) or "")
    assert station.matches(sdb, size=None, model="mmc reader") is None
    assert "--expect-model" in (station.matches(sdb, size=None, model="SanDisk") or "")


# ---------------------------------------------------------------- the CLI: picker and station

pytestmark_station = [
    pytest.mark.integration,
    pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("base") / "pi.img", boot_mib=64, root_mib=160, root_fill_mib=8)


@pytest.fixture()
def built(base: GeneratedImage, project: Path, piimg: Any, k3s_release: Published, machine: Machine,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    (project / "piimg.yaml").write_text(TWO_NODE_SPEC + k3s_release.cluster_yaml())
    r = piimg("build", "--image", str(base.path))
    assert r.exit_code == 0, r
    monkeypatch.setattr("piimg.cli.flash_cmd.for_this_machine", lambda: machine.devices)
    return project


def read_at(path: str | Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def _boot_node_json(loop: Loop, base: GeneratedImage, tmp_path: Path) -> dict[str, Any]:
    boot = tmp_path / f"{loop.backing.name}.boot"
    boot.write_bytes(read_at(loop.backing, base.boot_offset, base.boot_size))
    run_ok(["fsck.vfat", "-n", str(boot)])
    return json.loads(run_ok(["mtype", "-i", str(boot), "::piimg/node.json"]).stdout)


@pytest.mark.integration
@pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs")
def test_picker_lists_and_asks(built: Path, piimg: Any, machine: Machine, make_loop: Any, base: GeneratedImage,
                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    path = machine.plug(loop)
    # not a terminal: the list and a usage error, nothing written
    r = piimg("flash", "--node", "k8s-master")
    assert r.exit_code == 2, r
    assert "disks piimg can write:" in r.stderr and path in r.stderr and "Card Reader" in r.stderr
    assert "not offered:" in r.stderr and "holds the running system" in r.stderr
    assert read_at(loop.backing, 0, 4096) == PATTERN
    # a terminal: choose by number, then the usual confirmation
    monkeypatch.setattr("piimg.cli.flash_cmd._interactive", lambda: True)
    from piimg.cli.flash_cmd import _candidates

    number = [d.path for d in _candidates(machine.devices, CARD)[0]].index(path) + 1
    r = piimg("flash", "--node", "k8s-master", input=f"x\n{number}\ny\n")
    assert r.exit_code == 0, r
    # anything but a listed number is asked again, in piimg's words (S15), not click's "Error: ..."
    assert "please answer with a number from 1 to" in r.stderr and "(not 'x')" in r.stderr
    assert "Error" not in r.output
    assert _boot_node_json(loop, base, tmp_path)["hostname"] == "k8s-master"
    assert "k8s-master's card is ready (verified)" in r.stderr
    assert "still to flash: k8s-agent-1" in r.stderr
    assert "next: piimg flash --node k8s-agent-1 DEVICE" in r.stderr


@pytest.mark.integration
@pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs")
def test_station_flashes_each_new_card_and_ejects_it(built: Path, piimg: Any, machine: Machine, make_loop: Any,
                                                     base: GeneratedImage, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    cards: list[Loop] = [make_loop(CARD, name="card1.bin"), make_loop(CARD, name="card2.bin"),
                         make_loop(CARD, name="card3.bin")]
    for c in cards:
        assert_own_loop(c)
    # already attached when the station starts: never used
    machine.plug(cards[2], slot=7)
    events: list[str] = []
    polls = {"n": 0}

    def sleep(_seconds: float) -> None:  # between two looks: the user swaps cards
        polls["n"] += 1
        assert polls["n"] < 50, "the station kept waiting"
        if polls["n"] == 2:
            machine.plug(cards[0])
            events.append("card1 in")

    def on_eject(path: str) -> None:
        if path.endswith(cards[0].device.removeprefix("/dev/")):
            machine.unplug(cards[0])
            machine.plug(cards[1])  # the next card, in the same reader
            events.append("card1 out, card2 in")

    machine.on_eject = on_eject
    monkeypatch.setattr(station, "SLEEP", sleep)
    r = piimg("flash", "--all", "--json", input="y\ny\n")
    assert r.exit_code == 0, r
    assert events == ["card1 in", "card1 out, card2 in"]
    out = json.loads(r.stdout)
    assert [c["node"] for c in out["cards"]] == ["k8s-master", "k8s-agent-1"]  # the server first
    assert all(c["verified"] and c["kind"] == "overlay" for c in out["cards"])
    assert _boot_node_json(cards[0], base, tmp_path)["hostname"] == "k8s-master"
    assert _boot_node_json(cards[1], base, tmp_path)["hostname"] == "k8s-agent-1"
    assert read_at(cards[2].backing, 0, 4096) == PATTERN  # attached before: untouched
    assert len(machine.ejected) == 2
    assert "new disk for k8s-master" in r.stderr and "Card Reader" in r.stderr
    assert "already attached (never used" in r.stderr
    assert "next: piimg router-setup" in r.stderr


@pytest.mark.integration
@pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs")
def test_station_declined_card_and_ctrl_c_between_cards(built: Path, piimg: Any, machine: Machine, make_loop: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cards: list[Loop] = [make_loop(CARD, name="card1.bin"), make_loop(CARD, name="card2.bin")]
    polls = {"n": 0}

    def sleep(_seconds: float) -> None:
        polls["n"] += 1
        if polls["n"] == 1:
            machine.plug(cards[0])  # declined ("n"): left alone
        elif polls["n"] == 2:
            machine.plug(cards[1], slot=8)  # accepted for k8s-master
        elif polls["n"] > 3:
            raise KeyboardInterrupt  # Ctrl-C while waiting for the agent's card

    monkeypatch.setattr(station, "SLEEP", sleep)
    r = piimg("flash", "--nodes", "k8s-master,k8s-agent-1", input="n\ny\n")
    assert r.exit_code == 130, r
    assert read_at(cards[0].backing, 0, 4096) == PATTERN
    assert read_at(cards[1].backing, 0, 4096) != PATTERN
    assert "left " in r.stderr and "insert another card for k8s-master" in r.stderr
    assert "stopped: flashed k8s-master; not flashed: k8s-agent-1" in r.stderr
    assert "next: piimg flash --nodes k8s-agent-1" in r.stderr
    assert "Traceback" not in r.output


@pytest.mark.integration
@pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs")
def test_station_yes_needs_a_filter_and_skips_other_disks(built: Path, piimg: Any, machine: Machine, make_loop: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    r = piimg("flash", "--all", "--yes")
    assert r.exit_code == 2 and "--expect-size or --expect-model" in r.stderr, r
    cards: list[Loop] = [make_loop(CARD, name="stick.bin"), make_loop(CARD, name="card.bin")]
    polls = {"n": 0}

    def sleep(_seconds: float) -> None:
        polls["n"] += 1
        if polls["n"] == 1:
            machine.plug(cards[0], model="Flash Drive")  # not what --expect-model names: never written
        elif polls["n"] == 2:
            machine.plug(cards[1], slot=8)
        elif polls["n"] > 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(station, "SLEEP", sleep)
    r = piimg("flash", "--nodes", "k8s-master", "--yes", "--expect-model", "card reader")
    assert r.exit_code == 0, r
    assert "not used: its model 'Generic Flash Drive' does not contain 'card reader'" in r.stderr
    assert read_at(cards[0].backing, 0, 4096) == PATTERN
    assert read_at(cards[1].backing, 0, 4096) != PATTERN


def test_eject_failure_is_a_warning(machine: Machine) -> None:
    """Linux eject runs util-linux eject on USB/SD disks only; a failure does not fail the card."""
    sdb = machine.devices.discover(str(machine.dev / "sdb"))
    machine.devices.eject(sdb)
    assert machine.ejected == [str(machine.dev / "sdb")]
    loop0 = machine.devices.discover(str(machine.dev / "loop0"))
    machine.devices.eject(loop0)
    assert machine.ejected == [str(machine.dev / "sdb")]

    def fail(path: str) -> None:
        raise CommandFailed(["eject", path], 1, "eject: unable to eject\n")

    machine.on_eject = fail
    with pytest.raises(CommandFailed):
        machine.devices.eject(sdb)
    assert os.path.exists(machine.dev / "sdb")


@pytest.mark.integration
@pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs")
def test_hints_print_the_whole_corrected_command(built: Path, piimg: Any, machine: Machine) -> None:
    # usability audit S18: "hint: piimg flash ... /dev/sdb" became the command to run
    part = str(machine.dev / "mmcblk0p2")
    r = piimg("flash", "--node", "k8s-master", part)
    assert r.exit_code == 3, r
    assert r.stderr.splitlines()[-1] == f"hint: piimg flash --node k8s-master {machine.dev / 'mmcblk0'}", r.stderr
    # several nodes built and none chosen: the same command with --node, and the names
    card = str(machine.dev / "sdb")
    r = piimg("flash", card)
    assert r.exit_code == 1, r
    assert r.stderr.splitlines()[-1] == (
        f"hint: piimg flash --node k8s-agent-1 {card}   (nodes: k8s-agent-1, k8s-master)"), r.stderr
