"""One error hierarchy for piimg.

Library code raises these; only :mod:`piimg.cli` turns them into an
``error: ...`` line, an optional ``hint: ...`` line and an exit code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNSAFE: Final = 3


class PiimgError(Exception):
    """A failure the user can understand and act on."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None, context: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = context  # lines shown between the error and the hint (a quoted spec line)

    def __str__(self) -> str:
        return self.message


class ConfigError(PiimgError):
    """A bad value in the cluster spec; ``key`` is its dotted path (``nodes[1].address``)."""

    def __init__(self, key: str, message: str, *, hint: str | None = None, file: str | None = None,
                 context: str | None = None) -> None:
        self.key = key
        self.file = file
        text = one_line(f"{key}: {message}" if key else message)
        super().__init__(text, hint=hint, context=context)


#: An error line quotes the spec's values; a value can be a megabyte long.
MAX_MESSAGE: Final = 400


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one line of at most about ``limit`` characters: line breaks shown
    as ``\\n``, the middle of an over-long text left out (with how much was)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    head, tail = text[: limit - 100], text[-60:]
    return f"{head} [... {len(text) - len(head) - len(tail)} characters left out ...] {tail}"


class FileError(PiimgError):
    """A file or folder piimg reads or writes is missing, unreadable, unsafe or damaged;
    ``path`` names it as the message does (a local path, ``host:path`` for a file read over
    SSH, with ``:line:column`` when the error has a position in the file)."""

    def __init__(self, path: str | os.PathLike[str], message: str, *, hint: str | None = None,
                 context: str | None = None) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message, hint=hint, context=context)


class RenderError(PiimgError):
    """A file piimg makes from its own templates (manifests, first-boot files) cannot be made:
    a template fails, an Addon name k3s would refuse, a chart archive that was not fetched."""


class ToolMissing(PiimgError):
    """An external program is not installed; ``package`` names what provides it."""

    def __init__(self, tool: str, package: str) -> None:
        self.tool = tool
        self.package = package
        super().__init__(
            f"{tool}: command not found",
            hint=f"install it (Debian/Ubuntu: apt-get install {package}; macOS: brew install {package})",
        )


class CommandFailed(PiimgError):
    """An external command exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str = "") -> None:
        from piimg.run import shell_quote

        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        msg = f"command failed with exit code {returncode}: {shell_quote(argv)}"
        if stderr_tail(stderr):
            msg += f": {stderr_tail(stderr)}"
        super().__init__(msg)

    @property
    def tail(self) -> str:
        """The last line of stderr, or ``exit code N`` when the program said nothing."""
        return stderr_tail(self.stderr) or f"exit code {self.returncode}"


def stderr_tail(stderr: str) -> str:
    """The last non-empty line of a program's stderr (usually the one that says why); "" for none."""
    lines = stderr.strip().splitlines()
    return lines[-1].strip() if lines else ""


class UnsafeTarget(PiimgError):
    """piimg refuses to write to a device or file."""

    exit_code = EXIT_UNSAFE


class NeedsRoot(UnsafeTarget):
    """The target is not writable by this user; the CLI adds how to run piimg as root."""


class PartitionNotDisk(UnsafeTarget):
    """The target is a partition; ``disk`` is the whole disk to flash instead (the CLI
    prints the corrected command)."""

    def __init__(self, message: str, *, disk: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.disk = disk


class RouterError(PiimgError):
    """The RouterOS API refused, failed or is unreachable."""


class DownloadError(PiimgError):
    """A download or checksum verification failed."""


class NotFound(DownloadError):
    """The server answered HTTP 404 for ``url`` (callers decide whether that is fatal)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"{url}: not found (HTTP 404)")


class Unreachable(DownloadError):
    """No answer from the server: a name that does not resolve, a refused or
    dropped connection, a timeout (what being offline looks like)."""


class ImageError(PiimgError):
    """An image file is unreadable or not laid out as expected."""


class ImageTruncated(ImageError):
    """The image's partition table reaches past its end: a cut-off download."""


class FlashFailed(PiimgError):
    """Writing or flushing the target failed part-way (the card is incomplete)."""


class NotConfirmed(PiimgError):
    """The user answered no (or nothing) to a question before a destructive step."""


class NoTarget(PiimgError):
    """No DEVICE was given and no attached disk is one piimg could write (none, or all refused)."""


class LastBuildError(PiimgError):
    """``build/last.json`` is missing, damaged, or does not name the image wanted."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, or a termination signal handled like it (SIGTERM, SIGHUP).

    A subclass of :class:`KeyboardInterrupt`, so every ``except BaseException``
    clean-up runs exactly as for Ctrl-C. ``state`` says what the interruption
    left behind when that matters (a card flashed half-way); the CLI prints it.
    """

    def __init__(self, signum: int = 2, state: str = "") -> None:
        super().__init__(state)
        self.signum = signum
        self.state = state

    def with_state(self, state: str) -> Interrupted:
        return Interrupted(self.signum, state)


#: What to do about an OS error, by errno name; the sentence names the file.
_OS_HINTS: Final = {
    "EACCES": "check the permissions of the file and of its folder",
    "EPERM": "check the permissions of the file and of its folder",
    "ENOSPC": "free some space on the file system that holds it, or choose another folder",
    "EDQUOT": "your disk quota is used up: free some space, or choose another folder",
    "EROFS": "the file system is mounted read-only: choose another folder",
    "ELOOP": "a symbolic link on the way points back to itself",
    "EIO": "the disk reported an I/O error: check it (dmesg) and try again",
}


def os_hint(exc: OSError) -> str | None:
    """What to do about ``exc``, when there is something to say."""
    import errno

    return _OS_HINTS.get(errno.errorcode.get(exc.errno or 0, ""))


def from_os_error(exc: OSError, name: str | os.PathLike[str] | None = None) -> FileError:
    """One line for an :class:`OSError`: the file it concerns (``name`` if the
    caller knows it better than the exception does) and the cause in words."""
    file = os.fspath(name) if name is not None else exc.filename
    cause = exc.strerror or str(exc)
    if exc.filename2 is not None and name is None:
        what = f"{os.fsdecode(exc.filename)} -> {os.fsdecode(exc.filename2)}"
    else:
        what = os.fsdecode(file) if file is not None else ""
    return FileError(what, cause, hint=os_hint(exc))
