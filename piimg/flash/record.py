"""``build/flashed.json``: which node's current build went onto a card, so flash can say what is left.

::

    {"schema": 1, "nodes": {"k8s-master": {"image": "/abs/build/k8s-master.overlay",
        "image_mtime_ns": 1764..., "image_size": 91234, "target": "/dev/sdb",
        "verified": true, "at": "2026-12-03T08:40:00Z"}}}

A node counts as flashed while its file in ``build/last.json`` is the very
file (path, size, mtime) that was written; a rebuild makes it "to flash"
again. Recording is best effort: a failure to write this file never fails a
flash that worked.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from piimg.fsutil import write_atomic

SCHEMA: Final = 1


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    nodes = data.get("nodes") if isinstance(data, dict) and data.get("schema") == SCHEMA else None
    return nodes if isinstance(nodes, dict) else {}


def record(path: Path, node: str, image: str, target: str, *, verified: bool) -> None:
    """Remember that ``node``'s ``image`` went onto ``target``."""
    stamp = _stamp(image)
    if stamp is None:
        return
    nodes = _load(path)
    nodes[node] = {
        "image": os.path.abspath(image),
        "image_mtime_ns": stamp[0],
        "image_size": stamp[1],
        "target": target,
        "verified": verified,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        write_atomic(path, json.dumps({"schema": SCHEMA, "nodes": nodes}, indent=2, sort_keys=True) + "\n", mode=0o644)
    except OSError:
        pass


def flashed(path: Path, node: str, image: str) -> bool:
    """Was this very ``image`` (unchanged since) written to a card for ``node``?"""
    entry = _load(path).get(node)
    if not isinstance(entry, dict):
        return False
    return (entry.get("image") == os.path.abspath(image)
            and (entry.get("image_mtime_ns"), entry.get("image_size")) == _stamp(image))
