"""router-setup end to end: connect, detect the dialect, read, plan; apply; export.

The CLI calls :func:`open_session` (which yields a :class:`Session` holding
the plan), prints the plan, asks, then calls :meth:`Session.apply`; or
:func:`export_script` for ``--export``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piimg.errors import FileError, RouterError
from piimg.fsutil import write_atomic
from piimg.progress import QUIET, Reporter
from piimg.router import frr, rsc
from piimg.router.apply import ApplyResult, apply_plan, backup_name, read_current
from piimg.router.client import connect
from piimg.router.dialects import Dialect, detect_version, dialect_from_spec, same_family
from piimg.router.model import desired_state
from piimg.router.plan import Plan, make_plan
from piimg.spec.model import Spec


def resolve_dialect(spec: Spec, api: Any) -> Dialect:
    """The router's dialect; an explicit ``router.version`` must agree with it."""
    detected = detect_version(api)
    if spec.router.version != "auto":
        wanted = dialect_from_spec(spec.router.version)
        if not same_family(wanted, detected):
            raise RouterError(
                f"router.version is {spec.router.version} ({wanted.span}), but the router runs RouterOS {detected.text}",
                hint=f"set router.version: auto, or {detected.version[0]}.{detected.version[1]} "
                "(6 = 6.x, 7 = 7.0-7.18, 7.19, 7.20, 7.21, 7.22 = 7.22 and later)",
            )
    return detected


@dataclass
class Session:
    spec: Spec
    api: Any
    dialect: Dialect
    plan: Plan

    def apply(self, *, backup: bool = True, reporter: Reporter = QUIET) -> ApplyResult:
        name = backup_name(self.spec.cluster.name) if backup else None
        return apply_plan(self.api, self.plan, backup=name, reporter=reporter)


@contextlib.contextmanager
def open_session(spec: Spec, password: str, *, reporter: Reporter = QUIET) -> Iterator[Session]:
    """Connect, read the router and plan; the connection closes when the block ends."""
    key = spec.env_secrets.bgp_password
    api = connect(spec.router, password, base_dir=spec.paths.root)
    try:
        dialect = resolve_dialect(spec, api)
        reporter.info(f"connected to {spec.router.host}:{spec.router.api_port}: {dialect}")
        current = read_current(api, dialect)
        plan = make_plan(desired_state(spec, dialect, bgp_password=key), current)
        yield Session(spec, api, dialect, plan)
    finally:
        with contextlib.suppress(Exception):
            api.close()


def _export_folder(dest: Path) -> None:
    if not dest.parent.is_dir():
        raise FileError(dest.parent, f"folder does not exist (--export {dest})")


def export_frr(spec: Spec, dest: Path) -> None:
    """Write the FRR bgpd configuration (``router.kind: frr``); it holds the BGP key, so mode 0600."""
    _export_folder(dest)
    write_atomic(dest, frr.render(spec, bgp_password=spec.env_secrets.bgp_password), mode=0o600)


def export_script(spec: Spec, dest: Path, *, password: Callable[[], str]) -> Dialect:
    """Write the RouterOS script to ``dest``.

    Offline when ``router.version`` names a version; with ``auto`` it connects
    once to ask the router (``password`` is only called then).
    """
    _export_folder(dest)
    if spec.router.version == "auto":
        api = connect(spec.router, password(), base_dir=spec.paths.root)
        try:
            dialect = detect_version(api)
        finally:
            with contextlib.suppress(Exception):
                api.close()
    else:
        dialect = dialect_from_spec(spec.router.version)
    write_atomic(dest, rsc.render(spec, dialect), mode=0o644)
    return dialect
