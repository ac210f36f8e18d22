"""``build/last.json``: what the last ``piimg build`` wrote, for ``piimg flash``.

::

    {"schema": 3, "built_at": "2026-11-27T03:40:00Z", "spec": "/abs/piimg.yaml",
     "base": {"path": "/abs/base.img", "sha256": "...", "name": "...", "init_format": "systemd"},
     "nodes": {"k8s-master": {"image": "/abs/build/k8s-master.overlay", "kind": "overlay",
                              "size": 123, "role": "server", "address": "10.0.2.10",
                              "init_format": "systemd", "base_sha256": "...",
                              "shared": "/abs/build/shared-0123456789abcdef.layer",
                              "built_at": "2026-11-27T03:40:00Z"}}}

``kind`` is ``overlay`` (the file holds only what differs from the base named
by ``base_sha256``; ``piimg flash`` composes the two) or ``image`` (a full
image, ``piimg build --full-images``). ``size`` is the composed image's size.
``base`` is the base of the last run; each node names its own, because
nodes built earlier (``--node``, another base) are kept while their files
exist. ``shared`` is the shared layer an overlay applies on (the build's
files common to every node; ``""`` for full images and older overlays):
``piimg build`` removes a shared layer only when no node here names it.
Schemas 1 (full images only, no ``kind``) and 2 (no ``shared``) are still read.

All paths are absolute. :func:`load` is the only reader (``piimg build``
keeps earlier nodes from it, ``piimg flash`` takes its default image from
:meth:`LastBuild.image_for`); a file of another schema is refused by both.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from piimg.errors import LastBuildError
from piimg.fsutil import write_atomic

SCHEMA: Final = 3
#: Older schemas this reader still understands.
READABLE: Final = (1, 2, 3)


@dataclass(frozen=True)
class BaseRef:
    path: str
    sha256: str
    name: str
    init_format: str


@dataclass(frozen=True)
class NodeImage:
    image: str
    size: int
    role: str
    address: str
    init_format: str
    kind: str = "image"  # "overlay" | "image" (schema 1 had full images only)
    base_sha256: str = ""
    built_at: str = ""
    shared: str = ""  # the shared layer of an overlay (schema 3)

    @property
    def is_overlay(self) -> bool:
        return self.kind == "overlay"


@dataclass(frozen=True)
class LastBuild:
    built_at: str
    spec: str
    base: BaseRef
    nodes: dict[str, NodeImage] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def image_for(self, node: str | None) -> str:
        """The image of ``node``; with ``None``, the only node built (several: choose with ``--node``)."""
        names = sorted(self.nodes)
        if not names:
            raise LastBuildError("the last build lists no node images", hint="run piimg build again")
        if node is None:
            if len(names) > 1:
                raise LastBuildError(
                    f"several node images were built ({', '.join(names)}); choose one with --node NAME",
                    hint=f"piimg flash --node {names[0]} DEVICE",
                )
            node = names[0]
        if node not in self.nodes:
            raise LastBuildError(f"--node {node}: not in the last build (built: {', '.join(names)})")
        return self.nodes[node].image


def _bad(path: Path, why: str) -> LastBuildError:
    return LastBuildError(f"{path}: {why}", hint="run piimg build again")


def load(path: str | os.PathLike[str]) -> LastBuild:
    """Read ``last.json``; a clear error when it is missing or damaged."""
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LastBuildError(
            f"{path}: no such file (nothing built yet)",
            hint="run piimg build first, or give the image: piimg flash IMAGE DEVICE",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") not in READABLE:
        raise _bad(path, f"unsupported schema {data.get('schema') if isinstance(data, dict) else None!r}")
    try:
        nodes = {str(k): NodeImage(**v) for k, v in data["nodes"].items()}
        if any(n.kind not in ("overlay", "image") for n in nodes.values()):
            raise TypeError("unknown kind")
        for name, entry in nodes.items():
            if not isinstance(entry.image, str) or not entry.image:
                raise _bad(path, f"node {name} has no image path")
        return LastBuild(
            built_at=str(data["built_at"]),
            spec=str(data["spec"]),
            base=BaseRef(**data["base"]),
            nodes=nodes,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"missing or unexpected field ({exc})") from None


def save(path: str | os.PathLike[str], build: LastBuild) -> None:
    write_atomic(path, build.to_json(), mode=0o644)
