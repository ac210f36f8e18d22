"""``piimg status --watch``: run the checks again until they all pass or time runs out.

The loop decides only *when*: it runs ``check_once``, hands a round to
``on_round`` when what that round would say differs from the last one
reported (or after ``report_every`` quiet rounds, so a long wait still shows
it is alive), sleeps ``interval`` seconds and gives up once the next round
would start after ``timeout``. It never prints; the clock and the sleep are
parameters, so tests drive it with a fake clock and the CLI renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from piimg.status.model import Check, State, all_ok

#: A round that says the same as the last one reported is still reported after this many rounds.
REPORT_EVERY: Final = 10


@dataclass(frozen=True)
class Round:
    """The checks of one round and when they were done."""

    number: int  # from 1
    elapsed: float  # seconds since the watch started, when this round's checks had run
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all_ok(list(self.checks))

    @property
    def passed(self) -> int:
        return sum(c.state is State.OK for c in self.checks)

    @property
    def waiting(self) -> tuple[Check, ...]:
        """The checks not ok yet, in the order a person would debug them."""
        return tuple(c for c in self.checks if c.state is not State.OK)

    def gist(self) -> tuple[object, ...]:
        """What a round line says, apart from the time: every check's state and the first one waited for."""
        first = self.waiting[0] if self.waiting else None
        return tuple((c.name, c.state) for c in self.checks), first


@dataclass(frozen=True)
class Outcome:
    last: Round
    gave_up: bool  # the timeout ran out before every check passed


def watch(
    check_once: Callable[[], list[Check]],
    *,
    timeout: float,
    interval: float,
    on_round: Callable[[Round], None],
    report_every: int = REPORT_EVERY,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Run ``check_once`` every ``interval`` seconds until all its checks pass or ``timeout`` runs out.

    ``on_round`` gets each unfinished round whose :meth:`Round.gist` differs
    from the last one it got, and every ``report_every``-th round in a row
    that does not; the finishing round (all ok, or the one it gave up after)
    is in the returned :class:`Outcome`.
    """
    start = now()
    reported: tuple[object, ...] | None = None
    quiet = 0
    number = 0
    while True:
        number += 1
        checks = tuple(check_once())
        this = Round(number, now() - start, checks)
        if this.ok:
            return Outcome(this, gave_up=False)
        quiet += 1
        if this.gist() != reported or quiet >= report_every:
            on_round(this)
            reported, quiet = this.gist(), 0
        if now() - start + interval > timeout:
            return Outcome(this, gave_up=True)
        sleep(interval)
