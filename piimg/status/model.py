"""Check results: ok / fail / pending / skipped, each with one line of detail."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class State(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    PENDING = "pending"  # not there yet, but nothing is wrong so far (first boot running, IP <pending>)
    SKIPPED = "skipped"  # could not be checked because an earlier check failed


@dataclass(frozen=True)
class Check:
    name: str
    state: State
    detail: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


def all_ok(checks: list[Check]) -> bool:
    return bool(checks) and all(c.state is State.OK for c in checks)
