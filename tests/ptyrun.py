"""Run a command on a real pseudo-terminal, the way a person sees it.

The child gets the pty as stdin, stdout, stderr and controlling terminal, so
``isatty()`` is true, tqdm draws bars, and writing ``\\x03`` (Ctrl-C) makes the
terminal send SIGINT to it, as a keyboard does. SIGINT is reset to its
default in the child: a test run from a background job inherits it ignored.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def _child_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # start_new_session made us a session leader


class PtyProcess:
    def __init__(self, argv: Sequence[str], *, cwd: Path | str | None = None, env: dict[str, str] | None = None,
                 columns: int = 160, rows: int = 45) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**(env if env is not None else os.environ), "COLUMNS": str(columns), "LINES": str(rows)}
        env.setdefault("TERM", "xterm-256color")
        self.proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True, preexec_fn=_child_setup, close_fds=True)
        os.close(slave)
        self.master = master
        self.data = b""

    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting up to ``timeout``); False at the end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the slave has gone
            return False
        if not chunk:
            return False
        self.data += chunk
        return True

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def expect(self, needle: str, timeout: float = 60) -> str:
        """Wait until ``needle`` has been printed; the output so far."""
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline or (not self._read(0.1) and needle not in self.text):
                raise AssertionError(f"{needle!r} not printed; output so far:\n{self.text}")
        return self.text

    def wait_reading(self, timeout: float = 30) -> None:
        """Wait until the child sleeps in a read of the terminal (Linux: its wchan).

        A SIGINT that arrives after Python printed a prompt but before it
        entered read() is only noted, and read() then blocks: a test that
        types Ctrl-C must wait for the read, as a person's reaction time does.
        """
        deadline = time.monotonic() + timeout
        wchan = Path(f"/proc/{self.proc.pid}/wchan")
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if wchan.read_text() in ("wait_woken", "n_tty_read"):
                    return
            except OSError:
                return  # not Linux: no way to tell
            time.sleep(0.02)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Read to the end; the exit status and everything printed."""
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
            if time.monotonic() > deadline:
                ps = subprocess.run(["ps", "-o", "pid,pgid,sid,tpgid,tty,stat,wchan:20,cmd", "-p", str(self.proc.pid)],
                                    capture_output=True, text=True).stdout
                self.proc.kill()
                raise AssertionError(f"still running after {timeout} s:\n{ps}\noutput:\n{self.text}")
                raise AssertionError(f"still running after {timeout} s; output:\n{self.text}")
        return self.proc.wait(timeout=10), self.text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)

    def __enter__(self) -> PtyProcess:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def run_pty(argv: Sequence[str], **kwargs: object) -> tuple[int, str]:
    """Run ``argv`` to the end on a pty; its exit status and output (stdout and stderr as the terminal shows them)."""
    with PtyProcess(argv, **kwargs) as p:  # type: ignore[arg-type]
        return p.finish()


def piimg_argv(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "piimg", *args]
