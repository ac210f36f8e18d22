"""One error hierarchy for piimg.

Library code raises these; only :mod:`piimg.cli` turns them into an
``error: ...`` line, an optional ``hint: ...`` line and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNSAFE: Final = 3


class PiimgError(Exception):
    """A failure the user can understand and act on."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(PiimgError):
    """A bad value in the cluster spec; ``key`` is its dotted path (``nodes[1].address``)."""

    def __init__(self, key: str, message: str, *, hint: str | None = None, file: str | None = None) -> None:
        self.key = key
        self.file = file
        super().__init__(f"{key}: {message}" if key else message, hint=hint)


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
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        msg = f"command failed with exit code {returncode}: {shell_quote(argv)}"
        if tail:
            msg += f": {tail}"
        super().__init__(msg)


class UnsafeTarget(PiimgError):
    """piimg refuses to write to a device or file."""

    exit_code = EXIT_UNSAFE


class NeedsRoot(UnsafeTarget):
    """The target is not writable by this user; the CLI adds how to run piimg as root."""


class RouterError(PiimgError):
    """The RouterOS API refused, failed or is unreachable."""


class DownloadError(PiimgError):
    """A download or checksum verification failed."""


class ImageError(PiimgError):
    """An image file is unreadable or not laid out as expected."""
