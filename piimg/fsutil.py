"""Small file helpers: atomic writes (temporary name, then rename) and private files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    On any exception the temporary file is removed, so nothing half-written
    is ever left under the final name.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_atomic(dest: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` atomically with permissions ``mode`` from the start."""
    with atomic_path(dest) as tmp:
        os.chmod(tmp, mode)
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def open_atomic(dest: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """A binary file handle whose content appears at ``dest`` only when complete."""
    with atomic_path(dest) as tmp:
        os.chmod(tmp, mode)
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
