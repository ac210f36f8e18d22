"""Last step: check the token-bearing k3s config is root-only, then disable the service."""

from __future__ import annotations

import os
import stat

from .context import Context, StepError
from .k3s import CONFIG_PATH
from .nodeconf import UNIT_NAME
from .runner import CommandError


def step_finish(ctx: Context) -> None:
    config = ctx.path(CONFIG_PATH)
    try:
        mode = stat.S_IMODE(os.stat(config).st_mode)
    except OSError as exc:
        raise StepError("%s is missing (%s)" % (CONFIG_PATH, exc)) from exc
    if mode & 0o077:
        os.chmod(config, 0o600)
        ctx.log.warn("%s was mode %o: now 0600" % (CONFIG_PATH, mode))
    try:
        ctx.run(["systemctl", "disable", UNIT_NAME])
    except CommandError as exc:
        # Harmless: a later run finds every step done and exits at once.
        ctx.log.warn("could not disable %s: %s" % (UNIT_NAME, exc))
