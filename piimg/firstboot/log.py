"""One log voice: stdout (the journal, via the unit) and firstboot.log on the boot partition.

Every line is masked for the node's secrets before it is written anywhere.
"""

from __future__ import annotations

import sys
import time
from typing import List, Optional, TextIO


class Log:
    def __init__(self, file_path: Optional[str], *, stream: Optional[TextIO] = None) -> None:
        self.file_path = file_path
        self.stream = stream if stream is not None else sys.stdout
        self.secrets: List[str] = []
        self.step = "-"

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
        try:
            with open(self.file_path, "a", encoding="utf-8") as fh:
                for line in lines:
                    fh.write("%s [%s] %s%s\n" % (stamp, self.step, level, line))
        except OSError:
            pass  # boot partition missing or read-only: the journal still has it

    def info(self, msg: str) -> None:
        self._emit("", msg)

    def warn(self, msg: str) -> None:
        self._emit("warning: ", msg)

    def error(self, msg: str) -> None:
        self._emit("error: ", msg)
