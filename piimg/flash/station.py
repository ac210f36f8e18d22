"""``piimg flash --all``: a flash station, one card after another.

For each node: wait for a disk to *appear* (a card put into a reader, a USB
stick or SSD plugged in), show it with the node it will receive, ask, then
flash it with the single-flash verb (same refusals, unmount, first-MiB-last
write, read-back), eject it, and wait for the next.

Only a disk that appears while piimg waits is ever considered: a disk that
was already attached when the station started (or when the previous card
was written) is not "new", so the laptop's own disks, or a card flashed a
minute ago, are never picked by accident. A disk that disappears is
forgotten, so the next card may come back under the same name (sdb again).

Appearance is detected by polling the device list (Linux: /sys/class/block;
macOS: ``diskutil list``) twice a second: the same information udev and
DiskArbitration announce, without a dependency on either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from piimg.errors import CommandFailed, PiimgError
from piimg.flash.devices import Device, Devices
from piimg.flash.write import FlashResult
from piimg.progress import QUIET, Reporter

#: Seconds between two looks at the device list.
POLL: float = 0.5
#: How the watcher waits (tests replace it to plug cards in between two looks).
SLEEP: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Job:
    """One node's card."""

    node: str
    image: str  # the overlay or image file of the last build
    image_size: int
    role: str = ""


@dataclass(frozen=True)
class Flashed:
    job: Job
    device: Device
    result: FlashResult


@dataclass
class StationLog:
    """What the station did so far (the CLI prints it also after Ctrl-C)."""

    done: list[Flashed] = field(default_factory=list)
    failed: list[tuple[Job, Device, str]] = field(default_factory=list)

    def remaining(self, jobs: list[Job]) -> list[Job]:
        finished = {f.job.node for f in self.done}
        return [j for j in jobs if j.node not in finished]


class DiskWatcher:
    """Reports disks that appear after it started looking."""

    def __init__(self, devices: Devices, *, interval: float = POLL, sleep: Callable[[float], None] | None = None) -> None:
        self.devices = devices
        self.interval = interval
        self.sleep = sleep or SLEEP
        self.known: set[tuple[str, int, str]] = set()

    def _current(self) -> dict[tuple[str, int, str], Device]:
        # name, size and model: a card swapped for another between two looks is new
        # even though the kernel gave it the same name
        return {(d.name or d.path, d.size, d.label): d for d in self.devices.disks()}

    def start(self) -> list[Device]:
        """Remember what is attached now (never "new"); returns it."""
        current = self._current()
        self.known = set(current)
        return [current[n] for n in sorted(current)]

    def wait_new(self, *, accept: Callable[[Device], str | None], refused: Callable[[Device, str], None]) -> Device:
        """Block until a disk appears that ``accept`` has no objection to (it returns why not)."""
        while True:
            current = self._current()
            self.known &= set(current)  # pulled out: forgotten, the next card may reuse the name
            for name in sorted(set(current) - self.known):
                self.known.add(name)
                why = accept(current[name])
                if why is None:
                    return current[name]
                refused(current[name], why)
            self.sleep(self.interval)


def matches(device: Device, *, size: int | None, model: str | None) -> str | None:
    """The ``--expect-size``/``--expect-model`` filter: why ``device`` does not match (None: it does).

    Sizes match within 10 %: a "32 GB" card holds 29.7 to 32.0 GB depending on the maker.
    """
    if size is not None and abs(device.size - size) > size // 10:
        from piimg.units import human_size

        return f"its size {human_size(device.size)} is not the expected {human_size(size)} (--expect-size)"
    if model is not None and model.lower() not in device.label.lower():
        return f"its model {device.label!r} does not contain {model!r} (--expect-model)"
    return None


def run(
    jobs: list[Job],
    *,
    devices: Devices,
    watcher: DiskWatcher,
    accept: Callable[[Device, Job], str | None],
    ask: Callable[[Device, Job], bool],
    flash_one: Callable[[Job, Device], FlashResult],
    log: StationLog,
    reporter: Reporter = QUIET,
    eject: bool = True,
) -> StationLog:
    """Flash ``jobs`` one card after another; Ctrl-C (KeyboardInterrupt) propagates, ``log`` keeps what was done."""
    attached = watcher.start()
    if attached:
        names = ", ".join(d.write_path or d.path for d in attached)
        reporter.info(f"already attached (never used; pull a card out and put it back to use it): {names}")
    for index, job in enumerate(jobs, 1):
        reporter.info(f"[{index}/{len(jobs)}] insert the card for {job.node}{f' ({job.role})' if job.role else ''}; "
                      "waiting for a new disk (Ctrl-C stops)")
        while True:
            device = watcher.wait_new(
                accept=lambda d, job=job: accept(d, job),  # type: ignore[misc]
                refused=lambda d, why: reporter.warn(f"new disk {d.write_path or d.path} not used: {why}"),
            )
            if not ask(device, job):
                reporter.info(f"left {device.write_path or device.path} alone; insert another card for {job.node}")
                continue
            try:
                result = flash_one(job, device)
            except KeyboardInterrupt:
                raise
            except PiimgError as exc:
                log.failed.append((job, device, exc.message))
                reporter.warn(f"{job.node}: {exc.message}; insert another card for {job.node}")
                continue
            log.done.append(Flashed(job, device, result))
            if eject and device.kind == "block" and device.platform != "darwin":  # macOS: the verb ejected it
                try:
                    devices.eject(device)
                except CommandFailed as exc:
                    reporter.warn(f"{device.write_path}: eject failed ({exc.message}); wait a moment before pulling it")
            reporter.info(f"{job.node}'s card is ready ({'verified' if result.verified else 'NOT verified'}); "
                          f"{device.write_path or device.path} can be removed")
            break
    return log
