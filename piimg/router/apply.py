"""The thin layer that reads and writes RouterOS through librouteros.

Reads: one ``print`` per managed menu. Writes: ``add``/``set``/``remove`` in
the plan's order, one at a time, each reported as done. A failure (a
``!trap``, a dropped connection) stops the run with what was and was not
applied; the items carry piimg's marker, so the next run converges from
wherever this one stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from piimg.errors import RouterError
from piimg.progress import QUIET, Reporter
from piimg.router import facts
from piimg.router.dialects import Dialect
from piimg.router.model import menus_for
from piimg.router.plan import Operation, Plan, Row, normalize_row


def _path(api: Any, menu_path: str) -> Any:
    return api.path(*menu_path.strip("/").split("/"))


def read_current(api: Any, dialect: Dialect) -> dict[str, list[Row]]:
    """Every row of every menu piimg manages (the planner decides what is ours),
    plus the interfaces, interface lists and firewall filter rules it checks."""
    from librouteros.exceptions import LibRouterosError

    current: dict[str, list[Row]] = {}
    for path in [menu.path for menu in menus_for(dialect)] + list(facts.FACT_PATHS):
        try:
            current[path] = [normalize_row(r) for r in _path(api, path)]
        except LibRouterosError as exc:
            raise RouterError(f"cannot read {path}: {exc}") from None
    return current


def backup_name(cluster: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"piimg-{cluster}-{stamp}"


def save_backup(api: Any, name: str) -> None:
    """``/system/backup/save`` on the router (unencrypted; it stays on the router)."""
    from librouteros.exceptions import LibRouterosError

    try:
        api.config().backup_save(name)
    except LibRouterosError as exc:
        raise RouterError(
            f"backup {name} failed: {exc}", hint="free space on the router, or run with --no-backup"
        ) from None


@dataclass
class ApplyResult:
    done: list[Operation] = field(default_factory=list)
    backup: str | None = None


def conflicts_refused(plan: Plan, *, shown: str) -> RouterError:
    """Why a plan with conflicts is not applied; ``shown`` says where the user reads each fix."""
    return RouterError(
        f"{len(plan.conflicts)} item(s) on the router are in the way and not managed by piimg; nothing was changed",
        hint=f"fix them as shown {shown}, then run piimg router-setup again",
    )


def _run(api: Any, op: Operation) -> None:
    path = _path(api, op.menu.path)
    if op.action == "add":
        path.add(**op.props)
    elif op.action == "set":
        path.update(**{".id": op.item_id, **op.props})
    else:
        path.remove(op.item_id)


def apply_plan(
    api: Any,
    plan: Plan,
    *,
    backup: str | None,
    reporter: Reporter = QUIET,
) -> ApplyResult:
    """Apply ``plan`` in order. Raises RouterError naming what was and was not applied."""
    from librouteros.exceptions import LibRouterosError

    result = ApplyResult()
    if plan.conflicts:
        raise conflicts_refused(plan, shown="in the plan")
    if plan.empty:
        return result
    if backup:
        reporter.info(f"saving backup {backup}.backup on the router")
        save_backup(api, backup)
        result.backup = backup
    total = len(plan.operations)
    for op in plan.operations:
        try:
            _run(api, op)
        except (LibRouterosError, OSError) as exc:
            raise _stopped(result, plan, op, exc) from None
        result.done.append(op)
        reporter.info(f"done ({len(result.done)}/{total}): {op.brief()}")
    return result


def _stopped(result: ApplyResult, plan: Plan, failed: Operation, exc: Exception) -> RouterError:
    """The error that ends a run at ``failed``: why, and what was and was not applied.

    A ``!trap`` is a refusal: nothing of ``failed`` was applied. A lost
    connection (or any other failure) leaves ``failed`` in doubt.
    """
    from librouteros.exceptions import ConnectionClosed, FatalError, MultiTrapError, TrapError

    if isinstance(exc, (TrapError, MultiTrapError)):
        why, unsure = f"the router refused `{failed.brief()}`: {exc}", False
    elif isinstance(exc, (ConnectionClosed, FatalError, OSError)):
        why, unsure = f"the connection was lost during `{failed.brief()}` ({exc or type(exc).__name__})", True
    else:
        why, unsure = f"`{failed.brief()}` failed: {exc}", True
    pending = "; ".join(op.brief() for op in plan.operations[len(result.done) :])
    doubt = " (it may or may not have been applied)" if unsure else ""
    return RouterError(
        f"{why}; applied {len(result.done)} of {len(plan.operations)} change(s), not applied{doubt}: {pending}",
        hint="fix the cause and run piimg router-setup again: it continues from the router's current state"
        + (f" (backup {result.backup}.backup was saved first)" if result.backup else ""),
    )
