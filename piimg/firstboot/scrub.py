"""Step 1: the secrets leave the boot partition before anything else happens.

The FAT boot partition is readable by every local user and by anyone who
holds the card. The first-run hook (firstrun.sh, or cloud-init's runcmd)
copied the whole payload to the root-only install folder before this service
started; this step checks that copy and then removes every secret-bearing
part of the payload from the FAT. It runs first, so a later step that fails
for good (an agent whose server never comes up) leaves nothing secret on the
card; until it has succeeded nothing else runs.

:data:`SECRET_PATHS`, :data:`NODE_JSON_SECRET_FIELDS` and
:data:`SEED_SECRET_BLOCKS` are the one list of what on the boot partition is
secret: a new secret file or block is added there.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from typing import Any, Dict, Tuple

from .context import Context, StepError
from .store import write_atomic

#: Payload entries (paths relative to the payload folder; files or folders)
#: that hold secrets: removed from the boot partition outright. ``manifests/``
#: carries the BGP password Secret.
SECRET_PATHS: Tuple[str, ...] = ("manifests",)
#: node.json fields that hold secrets: emptied in the boot partition's copy,
#: which stays behind as a readable record of the node's settings.
NODE_JSON_SECRET_FIELDS: Tuple[Tuple[str, ...], ...] = (("secrets",), ("k3s", "config_yaml"))
#: user-data lines between these markers hold the node's SSH host key (cloud-init formats).
USER_DATA_BEGIN = "# piimg:ssh-host-key:begin"
USER_DATA_END = "# piimg:ssh-host-key:end"
#: Secret blocks in files at the top of the boot partition (outside the payload):
#: (file, first marker line, last marker line); the lines between, markers
#: included, are removed. cloud-init has used them by the time this step runs
#: (its ssh module runs once per instance, before runcmd starts this service).
SEED_SECRET_BLOCKS: Tuple[Tuple[str, str, str], ...] = (("user-data", USER_DATA_BEGIN, USER_DATA_END),)


def scrubbed(data: Dict[str, Any]) -> Dict[str, Any]:
    """node.json with every field of :data:`NODE_JSON_SECRET_FIELDS` emptied (still a valid node.json)."""
    out: Dict[str, Any] = json.loads(json.dumps(data))  # a deep copy
    for path in NODE_JSON_SECRET_FIELDS:
        parent: Any = out
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent:
            value = parent[path[-1]]
            parent[path[-1]] = type(value)() if isinstance(value, (dict, list, str)) else None
    return out


def without_block(text: str, begin: str, end: str) -> str:
    """``text`` without the lines from one starting with ``begin`` to one starting with ``end``."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(begin):
            inside = True
            continue
        if line.startswith(end):
            inside = False
            continue
        if not inside:
            out.append(line)
    return "".join(out)


def scrub_user_data(text: str) -> str:
    """``user-data`` without the host-key block."""
    return without_block(text, USER_DATA_BEGIN, USER_DATA_END)


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_root_copy(ctx: Context) -> None:
    """The installed payload must hold everything the FAT copy has, root-only, before the FAT copy goes."""
    installed, boot = ctx.payload_dir, ctx.boot_payload
    if _same(installed, boot):
        raise StepError(
            "refusing to run from the boot partition (%s): the first-run hook copies the payload to a "
            "root-only folder first; secrets would stay on the card" % boot
        )
    node_json = os.path.join(installed, "node.json")
    try:
        with open(node_json, encoding="utf-8") as fh:
            if not isinstance(json.load(fh), dict):
                raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise StepError("refusing to scrub the boot partition: %s is unusable (%s)" % (node_json, exc)) from exc
    for rel in SECRET_PATHS:
        if os.path.exists(os.path.join(boot, rel)) and not os.path.exists(os.path.join(installed, rel)):
            raise StepError("refusing to scrub the boot partition: %s is missing from %s" % (rel, installed))
    try:
        os.chmod(installed, 0o700)
        os.chmod(node_json, 0o600)
        mode = stat.S_IMODE(os.stat(installed).st_mode)
    except OSError as exc:
        raise StepError("cannot make %s root-only: %s" % (installed, exc)) from exc
    if mode & 0o077:
        raise StepError("%s is still readable by others (mode %o)" % (installed, mode))


def scrub_boot(ctx: Context) -> None:
    """Remove the secrets from the boot partition's payload (idempotent)."""
    boot = ctx.boot_payload
    node_json = os.path.join(boot, "node.json")
    if os.path.exists(node_json):
        try:
            with open(node_json, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            os.unlink(node_json)  # unreadable, may hold secrets: drop it
            ctx.log.info("removed unreadable %s" % node_json)
        else:
            clean = scrubbed(data)
            if clean != data:
                write_atomic(node_json, json.dumps(clean, indent=2, sort_keys=True) + "\n")
                ctx.log.info("removed secrets from %s" % node_json)
    for name, begin, end in SEED_SECRET_BLOCKS:
        path = os.path.join(ctx.boot_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        cleaned = without_block(text, begin, end)
        if cleaned != text:
            write_atomic(path, cleaned)
            ctx.log.info("removed the secret block %s from %s" % (begin, path))
    for rel in SECRET_PATHS:
        path = os.path.join(boot, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        else:
            continue
        ctx.log.info("removed %s" % path)


def step_scrub(ctx: Context) -> None:
    check_root_copy(ctx)
    scrub_boot(ctx)
    # FAT writes are cached: make the removal reach the card now, not at shutdown
    try:
        os.sync()
    except OSError:
        pass
