"""What every step gets: the root, the payload, the runner, the log, the limits."""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from .log import Log
from .nodeconf import NodeConfig
from .runner import Result, Runner
from .store import Store

#: Seconds. Overridable in node.json ``timeouts`` and with ``--timeout NAME=SECONDS``.
DEFAULT_TIMEOUTS: Dict[str, float] = {
    "network": 600.0,  # default route + DNS
    "clock": 600.0,  # NTP sync (no RTC on a Pi: TLS fails with a 1970 clock)
    "download": 600.0,  # fetching the k3s install script, with retries
    "server": 3600.0,  # an agent waiting for its server to answer (it may boot later)
    "install": 1800.0,  # the k3s install script itself
    "node": 900.0,  # node Ready
    "metallb": 900.0,  # MetalLB controller + speaker Running
    "ingress": 900.0,  # ingress Service has an external IP
    "command": 120.0,  # any single other command
    "http": 15.0,  # one HTTP request
    "backoff_initial": 2.0,
    "backoff_max": 60.0,
}


class StepError(Exception):
    """A step failed; the message is what status.json shows the user."""


class RebootRequested(Exception):
    """A step asked for a reboot; the run stops in state "waiting"."""


#: Bookworm and later leave a stub at /boot/cmdline.txt and /boot/config.txt
#: that starts with this (pi-gen stage1/00-boot-files/00-run.sh:12-14): the
#: firmware never reads it; editing it is raspberrypi/linux#5933.
STUB_MARK = "DO NOT EDIT"


def is_stub(path: str) -> bool:
    """True for the "DO NOT EDIT" stub Bookworm and later leave where the FAT used to be mounted."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(len(STUB_MARK)) == STUB_MARK
    except OSError:
        return False


def detect_boot_dir(root: str) -> str:
    """``/boot/firmware`` on Bookworm and later, ``/boot`` on older images.

    A folder whose ``cmdline.txt`` is the "DO NOT EDIT" stub is not the boot
    partition (it is what ``/boot`` holds while ``/boot/firmware`` is not mounted).
    """
    for rel in ("boot/firmware", "boot"):
        cand = os.path.join(root, rel)
        if is_stub(os.path.join(cand, "cmdline.txt")):
            continue
        if any(os.path.exists(os.path.join(cand, f)) for f in ("piimg", "cmdline.txt", "config.txt")):
            return cand
    return os.path.join(root, "boot/firmware")


class Context:
    def __init__(
        self,
        *,
        root: str,
        boot_dir: str,
        payload_dir: str,
        config: NodeConfig,
        runner: Runner,
        log: Log,
        store: Store,
        timeouts: Mapping[str, float],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.boot_dir = boot_dir
        self.payload_dir = payload_dir
        self.config = config
        self.runner = runner
        self.log = log
        self.store = store
        self.timeouts = dict(timeouts)
        self.sleep = sleep
        self.clock = clock

    @property
    def boot_payload(self) -> str:
        return os.path.join(self.boot_dir, "piimg")

    def path(self, abspath: str) -> str:
        """``abspath`` (a path on the Pi) under the configured root."""
        return os.path.join(self.root, abspath.lstrip("/"))

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        check: bool = True,
    ) -> Result:
        shown = " ".join(argv)
        if env:
            shown = " ".join("%s=%s" % kv for kv in sorted(env.items())) + " " + shown
        self.log.info("$ " + shown)
        return self.runner.run(argv, env=env, timeout=timeout or self.timeouts["command"], check=check)

    def wait_for(self, what: str, check: Callable[[], Tuple[bool, str]], timeout_name: str) -> str:
        """Poll ``check`` with exponential backoff until it passes or the limit is hit.

        ``check`` returns (ok, detail); the last detail is in the error, so the
        user learns what was missing, not just that something timed out.
        """
        limit = self.timeouts[timeout_name]
        delay = self.timeouts["backoff_initial"]
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            ok, detail = check()
            if ok:
                if attempt > 1:
                    self.log.info("%s: ok after %d attempts" % (what, attempt))
                return detail
            elapsed = self.clock() - start
            if elapsed >= limit:
                raise StepError(
                    "timed out after %gs (%d attempts) waiting for %s: %s" % (limit, attempt, what, detail)
                )
            pause = min(delay, limit - elapsed)
            note = "waiting for %s (%s); attempt %d, retry in %.1fs" % (what, detail, attempt, pause)
            self.log.info(note)
            # the first note of a wait reaches the boot partition at once, the retries throttled
            self.store.set("detail", self.log.mask(note), force=attempt == 1)
            self.sleep(pause)
            delay = min(delay * 2, self.timeouts["backoff_max"])
