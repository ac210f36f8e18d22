"""``status --watch``: the loop (piimg.status.watch) driven by a fake clock, and what the CLI prints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from piimg.status.model import Check, State
from piimg.status.watch import Round, watch


class FakeClock:
    """Time that passes only when the loop sleeps or a check takes time."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def rounds_of(clock: FakeClock, *rounds: list[Check], took: float = 0.0) -> Iterator[list[Check]]:
    """Each call of the checker returns the next round; each round takes ``took`` seconds."""
    for checks in rounds:
        clock.t += took
        yield checks


NODE_DOWN = Check("node k8s-master", State.FAIL, "127.0.2.10:22 unreachable (Connection refused)")
NODE_UP = Check("node k8s-master", State.OK, "127.0.2.10:22 answers")
BOOTING = Check("firstboot k8s-master", State.PENDING, "step k3s, running")
BOOTED = Check("firstboot k8s-master", State.OK, "step finish, done")


def run(clock: FakeClock, rounds: Iterator[list[Check]], *, timeout: float, interval: float) -> tuple[list[Round], object]:
    seen: list[Round] = []
    outcome = watch(lambda: next(rounds), timeout=timeout, interval=interval, on_round=seen.append,
                    now=clock.now, sleep=clock.sleep)
    return seen, outcome


def test_stops_at_the_first_round_where_everything_passes() -> None:
    clock = FakeClock()
    checks = rounds_of(clock, [NODE_DOWN, BOOTING], [NODE_UP, BOOTING], [NODE_UP, BOOTED], [NODE_DOWN, BOOTING])
    seen, outcome = run(clock, checks, timeout=600, interval=15)
    assert not outcome.gave_up and outcome.last.ok and outcome.last.number == 3
    assert outcome.last.elapsed == 30 and clock.sleeps == [15, 15]
    assert [r.number for r in seen] == [1, 2] and [r.passed for r in seen] == [0, 1]
    assert seen[1].waiting == (BOOTING,)


def test_passing_at_once_neither_reports_nor_sleeps() -> None:
    clock = FakeClock()
    seen, outcome = run(clock, rounds_of(clock, [NODE_UP, BOOTED]), timeout=600, interval=15)
    assert seen == [] and clock.sleeps == [] and outcome.last.ok and not outcome.gave_up


def test_gives_up_rather_than_sleep_past_the_timeout() -> None:
    clock = FakeClock()
    checks = rounds_of(clock, *[[NODE_DOWN, BOOTING]] * 100, took=2)
    _, outcome = run(clock, checks, timeout=60, interval=15)
    # rounds end at 2, 19, 36, 53 s; a fifth would start at 68 s, after the timeout
    assert outcome.gave_up and outcome.last.number == 4 and outcome.last.elapsed == 53
    assert clock.sleeps == [15, 15, 15] and not outcome.last.ok


def test_timeout_zero_is_one_round() -> None:
    clock = FakeClock()
    seen, outcome = run(clock, rounds_of(clock, [NODE_DOWN, BOOTING]), timeout=0, interval=1)
    assert outcome.gave_up and outcome.last.number == 1 and clock.sleeps == []
    assert [r.number for r in seen] == [1]


@pytest.mark.parametrize("checks", [[], [Check("http", State.SKIPPED, "no LoadBalancer IP to ask")]])
def test_no_checks_or_skipped_ones_are_not_success(checks: list[Check]) -> None:
    clock = FakeClock()
    _, outcome = run(clock, rounds_of(clock, checks, checks), timeout=10, interval=10)
    assert outcome.gave_up and outcome.last.number == 2
