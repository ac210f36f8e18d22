"""One log voice: stdout (the journal, via the unit) and firstboot.log on the boot partition.

Every line is masked for the node's secrets before it is written anywhere.
The journal gets every line at once; the boot partition's copy is appended
in batches (a warning or error, an explicit :meth:`Log.flush` at each step's
end, else at most every ``interval`` seconds), so hours of waiting do not
rewrite the FAT next to cmdline.txt every few seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, List, Optional, TextIO

#: Seconds between two appends of routine lines to the boot partition's log.
FAT_INTERVAL = 60.0


class Log:
    def __init__(
        self,
        file_path: Optional[str],
        *,
        stream: Optional[TextIO] = None,
        interval: float = FAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.file_path = file_path
        self.stream = stream if stream is not None else sys.stdout
        self.secrets: List[str] = []
        self.step = "-"
        self.interval = interval
        self.clock = clock
        self._pending: List[str] = []
        self._flushed = clock()

    def add_secret(self, secret: Optional[str]) -> None:
        if secret and len(secret) >= 4 and secret not in self.secrets:
            self.secrets.append(secret)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _emit(self, level: str, msg: str) -> None:
        text = self.mask(msg)
        lines = text.splitlines() or [""]
        try:
            for line in lines:
                self.stream.write("[%s] %s%s\n" % (self.step, level, line))
            self.stream.flush()
        except (OSError, ValueError):
            pass
        if not self.file_path:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._pending.extend("%s [%s] %s%s\n" % (stamp, self.step, level, line) for line in lines)
        if level or self.clock() - self._flushed >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Append the pending lines to the boot partition's log."""
        self._flushed = self.clock()
        if not self._pending or not self.file_path:
            return
        pending, self._pending = self._pending, []
        try:
            with open(self.file_path, "a", encoding="utf-8") as fh:
                fh.writelines(pending)
        except OSError:
            pass  # boot partition missing or read-only: the journal still has it

    def info(self, msg: str) -> None:
        self._emit("", msg)

    def warn(self, msg: str) -> None:
        self._emit("warning: ", msg)

    def error(self, msg: str) -> None:
        self._emit("error: ", msg)
