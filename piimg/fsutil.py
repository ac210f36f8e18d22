"""Small file helpers: atomic writes (temporary name, then rename) and private files.

Every temporary file or folder made here is *claimed*: piimg holds an
exclusive ``flock`` on it for as long as it works on it. The kernel drops the
lock when the process dies, however it dies (``kill -9`` included), so a later
run can tell a temporary left behind by a dead piimg (unlocked: removed) from
one another piimg is still writing (locked: left alone). Only names of the
exact shape piimg gives its own temporaries for the same destination are
ever considered.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from piimg.errors import FileError, PiimgError, from_os_error

#: mkstemp/mkdtemp put 8 characters of this alphabet between prefix and suffix (CPython tempfile).
_RANDOM = r"[a-z0-9_]{8}"


def _claim(path: Path) -> int:
    """Open ``path`` (file or folder) and take an exclusive lock on it; returns the fd."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh folder: only a remove_stale can hold it, for an instant
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unclaimed(path: Path) -> bool:
    """True if nobody holds the lock on ``path`` (its piimg is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def remove_stale(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """Remove temporaries ``<prefix><8 random chars><suffix>`` in ``folder`` that no live
    process claims; returns what was removed. Anything else in ``folder`` is never touched."""
    pattern = re.compile(re.escape(prefix) + _RANDOM + re.escape(suffix))
    removed: list[Path] = []
    try:
        candidates = sorted(folder.iterdir())
    except OSError:
        return removed
    for path in candidates:
        if not pattern.fullmatch(path.name) or path.is_symlink() or not _unclaimed(path):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _new_claimed_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """mkstemp, then claim it. Another run's :func:`remove_stale` may remove the
    name in the instant between the two: then the name no longer leads to our
    file, and we take a new one."""
    for _ in range(10):
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file: only a remove_stale can hold it, for an instant
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, Path(tmp)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EEXIST, "could not create a temporary file", str(folder))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    On any exception the temporary file is removed, so nothing half-written
    is ever left under the final name. Temporaries of earlier runs for the
    same ``dest`` that died without cleaning up (``kill -9``, power loss) are
    removed first; those of a run still going are not.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}."
    remove_stale(dest.parent, prefix, suffix)
    try:
        fd, tmp_path = _new_claimed_file(dest.parent, prefix, suffix)
    except OSError as exc:
        raise _about(exc, dest, None) from None
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError):
            raise _about(exc, dest, tmp_path) from None
        if isinstance(exc, PiimgError):
            # the temporary is gone: a message naming it would send the user looking for it
            exc.message = exc.message.replace(str(tmp_path), str(dest))
            exc.args = (exc.message,)
        raise
    finally:
        os.close(fd)


def _about(exc: OSError, dest: Path, tmp: Path | None) -> BaseException:
    """An OSError while making ``dest`` names ``dest`` (which the user knows), not the
    temporary (which is gone); an error about another file is left as it is."""
    if exc.filename is None or tmp is None or os.fsdecode(exc.filename) == str(tmp):
        err = from_os_error(exc, dest)
        err.message += " (nothing was written under this name)"
        return err
    return exc


@contextlib.contextmanager
def temp_dir(parent: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """A claimed temporary folder in ``parent``, removed afterwards; unclaimed
    folders of the same ``prefix`` left by dead runs are removed first."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = -1
    try:
        fd = _claim(path)  # see _new_claimed_file: the same instant, here the folder would be gone
        if not os.path.samestat(os.fstat(fd), os.stat(path)):
            raise FileNotFoundError(errno.ENOENT, "temporary folder removed under us", str(path))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def write_atomic(dest: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` atomically with permissions ``mode`` from the start."""
    with atomic_path(dest) as tmp:
        os.chmod(tmp, mode)
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())


def read_private(path: Path) -> bytes:
    """The bytes of a file only its owner may use (a token, a key); refused, naming the
    mode and the fix, when its group or others have any permission on it (OpenSSH
    refuses such a private key the same way). The mode checked is the open file's."""
    with open(path, "rb") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            raise FileError(path, f"readable by other users (mode {mode:04o})", hint=f"chmod 600 {path}")
        return fh.read()
