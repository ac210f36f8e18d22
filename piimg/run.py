"""The one way piimg runs external programs.

argv lists only, never a shell; a small clean environment; secrets masked in
logs and errors; a missing program reported with the package that provides it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Final

from piimg.errors import CommandFailed, ToolMissing

log = logging.getLogger(__name__)

#: Which package provides a tool (Debian name; Homebrew mostly agrees).
PACKAGES: Final[dict[str, str]] = {
    "xz": "xz-utils",
    "zstd": "zstd",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mtype": "mtools",
    "fsck.vfat": "dosfstools",
    "mkfs.vfat": "dosfstools",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "ssh": "openssh-client",
    "diskutil": "macOS base system",
    "umount": "mount",
    "bmaptool": "bmap-tools",
    "sfdisk": "fdisk",
}

_KEEP_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "USER", "SSH_AUTH_SOCK")


def shell_quote(argv: Sequence[str], *, secrets: Sequence[str] = ()) -> str:
    """``argv`` as a line one could paste into a shell, secrets masked."""
    text = shlex.join(str(a) for a in argv)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _mask(argv: Sequence[str], secrets: Sequence[str]) -> list[str]:
    out = []
    for arg in argv:
        for secret in secrets:
            if secret:
                arg = arg.replace(secret, "***")
        out.append(arg)
    return out


def which(tool: str) -> str:
    """Absolute path of ``tool`` or :class:`ToolMissing`."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, PACKAGES.get(tool, tool))
    return path


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; raise :class:`CommandFailed` on a non-zero exit when ``check``.

    ``env`` adds to a cleaned copy of the environment. ``secrets`` are masked
    in the debug log and in the error (they may appear in ``input``, never in
    argv: callers pass secrets through stdin or files).
    """
    argv = [str(a) for a in argv]
    exe = which(argv[0]) if os.sep not in argv[0] else argv[0]
    log.debug("run: %s", shell_quote(argv, secrets=secrets))
    try:
        proc = subprocess.run(
            [exe, *argv[1:]],
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=clean_env(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(argv[0], PACKAGES.get(argv[0], argv[0])) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, -1, f"timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        stderr = (proc.stderr or b"").decode("utf-8", "replace")
        for secret in secrets:
            if secret:
                stderr = stderr.replace(secret, "***")
        raise CommandFailed(_mask(argv, secrets), proc.returncode, stderr)
    return proc


def start(
    argv: Sequence[str],
    *,
    stdout: int | IO[bytes] = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` for streaming, the way :func:`run` runs it (which, clean env, debug log).

    stdin is ``/dev/null``, stderr a pipe the caller reads once the program
    has ended (decoders write little there), ``stdout`` a pipe (unbuffered)
    or a file the program writes itself. Prefer :func:`spawn`, which also
    waits and reports a failure; a long-lived reader object uses this.
    """
    argv = [str(a) for a in argv]
    exe = which(argv[0]) if os.sep not in argv[0] else argv[0]
    log.debug("spawn: %s", shell_quote(argv, secrets=secrets))
    try:
        return subprocess.Popen(
            [exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, env=clean_env(env), bufsize=0
        )
    except FileNotFoundError as exc:
        raise ToolMissing(argv[0], PACKAGES.get(argv[0], argv[0])) from exc


def finish(proc: subprocess.Popen[bytes], *, kill: bool = False) -> str:
    """Stop (with ``kill``) or wait for ``proc``, close its pipes; returns its stderr ("" the second time)."""
    if kill and proc.poll() is None:
        proc.kill()
    proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr and not proc.stderr.closed else ""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return err


@contextlib.contextmanager
def spawn(
    argv: Sequence[str],
    *,
    stdout: int | IO[bytes] = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``with spawn(argv) as proc:`` stream from (or follow) a running program.

    Leaving the block waits for it and raises :class:`CommandFailed` (with
    the stderr tail, secrets masked) on a non-zero exit; leaving it by an
    exception (Ctrl-C included) kills the program first.
    """
    proc = start(argv, stdout=stdout, env=env, secrets=secrets)
    try:
        yield proc
    except BaseException:
        finish(proc, kill=True)
        raise
    stderr = finish(proc)
    if proc.returncode != 0:
        for secret in secrets:
            if secret:
                stderr = stderr.replace(secret, "***")
        raise CommandFailed(_mask([str(a) for a in argv], secrets), proc.returncode, stderr)
