"""Where piimg keeps things: one object, so tests can point it at ``tmp_path``."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

SPEC_NAME = "piimg.yaml"


def user_cache_dir() -> Path:
    """``$PIIMG_CACHE_DIR``, else ``~/Library/Caches/piimg`` on macOS, else XDG."""
    override = os.environ.get("PIIMG_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "piimg"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "piimg"


@dataclass(frozen=True)
class ProjectPaths:
    """Files that belong to one cluster spec, all in its folder ``root``.

    The one place that knows the project's layout: the CLI makes it from
    ``-c FILE`` before the spec is read, and the loaded
    :class:`~piimg.spec.model.Spec` carries the same one as ``spec.paths``
    (relative paths in the spec, such as ``image.url: ./my.img``, are
    relative to ``root``).
    """

    #: the spec file as given (``piimg.yaml``, or ``-c FILE``)
    spec: Path
    #: the spec's folder, absolute
    root: Path

    @classmethod
    def for_spec(cls, spec: str | os.PathLike[str] | None) -> ProjectPaths:
        path = Path(spec) if spec else Path(SPEC_NAME)
        return cls(path, path.resolve().parent)

    @classmethod
    def in_folder(cls, root: Path) -> ProjectPaths:
        """The project in ``root``, for a spec that was not read from a file there (text, defaults)."""
        return cls(root / SPEC_NAME, root)

    @property
    def state_dir(self) -> Path:
        return self.root / ".piimg"

    @property
    def secrets(self) -> Path:
        return self.state_dir / "secrets.yaml"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def last_build(self) -> Path:
        return self.build_dir / "last.json"

    @property
    def flashed(self) -> Path:
        """Which node's build went onto a card (``piimg flash`` keeps it; see piimg.flash.record)."""
        return self.build_dir / "flashed.json"
