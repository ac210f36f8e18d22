"""Steps 7-8: scrub secrets from the boot partition, then disable the service."""

from __future__ import annotations

import json
import os
import shutil
import stat

from .context import Context, StepError
from .k3s import CONFIG_PATH
from .nodeconf import UNIT_NAME
from .runner import CommandError
from .store import write_atomic


def scrubbed(data: dict) -> dict:  # type: ignore[type-arg]
    """node.json without ``secrets`` and without the token-bearing k3s config."""
    out = dict(data)
    out["secrets"] = {}
    if isinstance(out.get("k3s"), dict):
        out["k3s"] = dict(out["k3s"], config_yaml="")
    return out  # still a valid node.json (NodeConfig loads it), minus the secrets


#: user-data lines between these markers hold the node's SSH host key (cloud-init formats).
USER_DATA_BEGIN = "# piimg:ssh-host-key:begin"
USER_DATA_END = "# piimg:ssh-host-key:end"


def scrub_user_data(text: str) -> str:
    """``user-data`` without the host-key block (cloud-init has used it: ``ssh`` runs once per instance)."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(USER_DATA_BEGIN):
            inside = True
            continue
        if line.startswith(USER_DATA_END):
            inside = False
            continue
        if not inside:
            out.append(line)
    return "".join(out)


def _scrub_seed(ctx: Context) -> None:
    path = os.path.join(ctx.boot_dir, "user-data")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return
    cleaned = scrub_user_data(text)
    if cleaned != text:
        write_atomic(path, cleaned)
        ctx.log.info("removed the SSH host key from %s" % path)


def step_scrub(ctx: Context) -> None:
    # The FAT boot partition is readable by every local user (and by anyone
    # holding the card): secrets must live only in root-owned 0600 files.
    config = ctx.path(CONFIG_PATH)
    try:
        mode = stat.S_IMODE(os.stat(config).st_mode)
    except OSError as exc:
        raise StepError("refusing to scrub: %s is missing (%s)" % (CONFIG_PATH, exc)) from exc
    if mode & 0o077:
        os.chmod(config, 0o600)
    # The installed payload keeps node.json for re-runs: root-only.
    if os.path.realpath(ctx.payload_dir) != os.path.realpath(ctx.boot_payload):
        try:
            os.chmod(ctx.payload_dir, 0o700)
            os.chmod(os.path.join(ctx.payload_dir, "node.json"), 0o600)
        except OSError as exc:
            ctx.log.warn("cannot restrict %s: %s" % (ctx.payload_dir, exc))
    node_json = os.path.join(ctx.boot_payload, "node.json")
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
            write_atomic(node_json, json.dumps(scrubbed(data), indent=2, sort_keys=True) + "\n")
            ctx.log.info("removed secrets from %s" % node_json)
    _scrub_seed(ctx)
    manifests = os.path.join(ctx.boot_payload, "manifests")
    if os.path.isdir(manifests):
        shutil.rmtree(manifests)
        ctx.log.info("removed %s" % manifests)


def step_finish(ctx: Context) -> None:
    try:
        ctx.run(["systemctl", "disable", UNIT_NAME])
    except CommandError as exc:
        # Harmless: a later run finds every step done and exits at once.
        ctx.log.warn("could not disable %s: %s" % (UNIT_NAME, exc))
