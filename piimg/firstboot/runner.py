"""The one way first boot runs external commands (tests replace it with a recorder).

argv lists only, never a shell string; a small clean environment, so nothing
from the service's environment (a stray ``K3S_TOKEN``) reaches a child.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

_KEEP_ENV = ("LANG", "LC_ALL", "TERM")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CommandError(Exception):
    """A command could not run, timed out or exited non-zero (with check)."""

    def __init__(self, argv: Sequence[str], returncode: int, detail: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.detail = detail
        tail = detail.strip().splitlines()[-5:]
        msg = "%s failed (exit %d)" % (" ".join(self.argv), returncode)
        if tail:
            msg += ": " + " | ".join(tail)
        super().__init__(msg)


@dataclass
class Result:
    argv: List[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""


def child_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """A clean environment: PATH, HOME, locale, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
    env["PATH"] = _PATH
    env["HOME"] = "/root"
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


class Runner:
    """Runs commands for real. Subclass and override :meth:`run` to record."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        check: bool = True,
    ) -> Result:
        argv = [str(a) for a in argv]
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(env),
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandError(argv, 127, "program not found: %s" % argv[0]) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(argv, -1, "timed out after %s s" % timeout) from exc
        result = Result(
            argv,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, result.stderr or result.stdout)
        return result
