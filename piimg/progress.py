"""Progress reporting that library code can use without printing.

Library functions take a :class:`Reporter` (default: :data:`QUIET`). The CLI
passes one that draws a tqdm bar on a TTY and writes one plain line per step
otherwise, so logs of non-interactive runs stay short.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol

from piimg.units import human_rate, human_size


class Bar(Protocol):
    def update(self, n: int) -> None: ...


class Reporter(Protocol):
    def info(self, message: str) -> None:
        """One line for the user (a step started or finished)."""

    def note(self, message: str) -> None:
        """A line the bar that follows makes redundant on a terminal (the URL before a download
        bar): shown in logs (output not a terminal), on a terminal only with --debug."""

    def warn(self, message: str) -> None:
        """A warning the user should read."""

    def bar(self, description: str, total: int | None, *, unit: str = "B") -> AbstractContextManager[Bar]:
        """A progress bar context; ``total`` None when unknown."""


class _NullBar:
    def update(self, n: int) -> None:
        pass


class QuietReporter:
    """Swallows everything: the default for library calls and tests."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def note(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextmanager
    def bar(self, description: str, total: int | None, *, unit: str = "B") -> Iterator[Bar]:
        yield _NullBar()


QUIET = QuietReporter()


class _LineBar:
    """Non-TTY stand-in for a bar: one line when done, with the rate."""

    def __init__(self) -> None:
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n


class ConsoleReporter:
    """tqdm bars on a TTY, plain lines otherwise; everything on stderr."""

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty

    def info(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def note(self, message: str) -> None:
        if self.tty:
            logging.getLogger(__name__).debug(message)  # the bar names the file (S14: not the path twice)
        else:
            self.info(message)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream, flush=True)

    @contextmanager
    def bar(self, description: str, total: int | None, *, unit: str = "B") -> Iterator[Bar]:
        if self.tty:
            from tqdm import tqdm

            with tqdm(
                total=total,
                desc=description,
                # "iB" + divisor 1024: the bar reads "21.0MiB/176MiB", the units of the text lines
                unit="iB" if unit == "B" else unit,
                unit_scale=unit == "B",
                unit_divisor=1024 if unit == "B" else 1000,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            ) as bar:
                yield bar
            return
        line = _LineBar()
        start = time.monotonic()
        yield line
        elapsed = max(time.monotonic() - start, 1e-6)
        if unit == "B":
            detail = f"{human_size(line.done)} in {elapsed:.1f} s ({human_rate(line.done, elapsed)})"
        else:
            detail = f"{line.done} {unit} in {elapsed:.1f} s"
        print(f"{description}: {detail}", file=self.stream, flush=True)
