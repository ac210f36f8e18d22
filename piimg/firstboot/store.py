"""Persistent progress (state.json, root-only) and the public status.json.

``/var/lib/piimg/state.json`` is the truth that makes steps resumable;
``status.json`` on the boot partition mirrors it for a user who pulls the card
(or for ``piimg status`` over SSH). Both are rewritten atomically, so a power
cut leaves the previous or the new version, never half. state.json changes
with every change; the FAT mirror at once on a step or state change, but a
wait's progress note at most every :data:`FAT_INTERVAL` seconds: the FAT sits
next to cmdline.txt and config.txt, and a power cut in the middle of a write
can leave it dirty.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from . import VERSION

STATE_SCHEMA = 1
#: Seconds between two writes of progress-only changes to the boot partition.
FAT_INTERVAL = 60.0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_atomic(path: str, data: str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename; fsync both."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, mode)  # umask, and FAT ignores it: harmless
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some file systems refuse fsync on a directory


class Store:
    """Step bookkeeping: state file (root-only) + status file (boot partition)."""

    def __init__(
        self,
        state_path: str,
        status_path: str,
        hostname: str,
        *,
        fat_interval: float = FAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_path = state_path
        self.status_path = status_path
        self.hostname = hostname
        self.fat_interval = fat_interval
        self.clock = clock
        self._fat_written: Optional[float] = None
        self.data: Dict[str, Any] = self._load()

    def _load(self) -> Dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict) and data.get("schema") == STATE_SCHEMA:
                data.setdefault("steps", {})
                return data
        except (OSError, ValueError):
            pass
        return {"schema": STATE_SCHEMA, "started": None, "state": "running", "step": None,
                "steps": {}, "error": None, "ingress_ip": None}

    # -- queries -------------------------------------------------------------
    def step(self, name: str) -> Dict[str, Any]:
        steps: Dict[str, Dict[str, Any]] = self.data["steps"]
        if name not in steps:
            steps[name] = {"state": "pending", "started": None, "finished": None, "attempts": 0, "error": None}
        return steps[name]

    def is_done(self, name: str) -> bool:
        return bool(self.data["steps"].get(name, {}).get("state") == "done")

    def get(self, key: str) -> Any:
        return self.data.get(key)

    # -- changes ---------------------------------------------------------------
    def set(self, key: str, value: Any, *, force: bool = False) -> None:
        """A detail (progress note, bookkeeping): reaches the boot partition with the next throttled write
        (at once with ``force``)."""
        self.data[key] = value
        self.save(force=force)

    def begin(self, steps: List[str]) -> None:
        """Start (or resume) a run of ``steps``, listed in order, pending ones too."""
        old = self.data["steps"]
        self.data["steps"] = {}
        for name in steps:
            self.data["steps"][name] = old.get(name) or self.step(name)
        if not self.data.get("started"):
            self.data["started"] = now()
        self.data["state"] = "running"
        self.data["error"] = None
        self.save()

    def step_start(self, name: str) -> None:
        st = self.step(name)
        st.update(state="running", started=now(), finished=None, error=None)
        st["attempts"] = int(st.get("attempts") or 0) + 1
        self.data.update(step=name, state="running", error=None, detail=None)
        self.save()

    def step_end(self, name: str, state: str, error: Optional[str] = None) -> None:
        st = self.step(name)
        st.update(state=state, finished=now(), error=error)
        self.data.update(step=name, error=error, detail=None)
        if state in ("failed", "waiting"):
            self.data["state"] = state
        self.save()

    def finish(self) -> None:
        self.data.update(state="done", error=None)
        self.save()

    def fail(self, error: str) -> None:
        """A failure outside any step (bad node.json, interrupted)."""
        self.data.update(state="failed", error=error)
        self.save()

    # -- files -------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        return {
            "step": self.data.get("step"),
            "state": self.data.get("state"),
            "started": self.data.get("started"),
            "updated": now(),
            "steps": self.data.get("steps", {}),
            "error": self.data.get("error"),
            "ingress_ip": self.data.get("ingress_ip"),
            "detail": self.data.get("detail"),  # what the current step is waiting for
            "hostname": self.hostname,
            "version": VERSION,
        }

    def save(self, *, force: bool = True) -> None:
        self.data["updated"] = now()
        os.makedirs(os.path.dirname(self.state_path), mode=0o700, exist_ok=True)
        write_atomic(self.state_path, json.dumps(self.data, indent=2) + "\n", 0o600)
        t = self.clock()
        if not force and self._fat_written is not None and t - self._fat_written < self.fat_interval:
            return
        try:
            write_atomic(self.status_path, json.dumps(self.status(), indent=2) + "\n")  # steps in run order
            self._fat_written = t
        except OSError:
            pass  # the boot partition is a courtesy copy; state.json is the truth
