"""``status --watch``: the loop (piimg.status.watch) driven by a fake clock, and what the CLI prints."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.cli import status_cmds
from piimg.status import watch as watching
from piimg.status.model import Check, State
from piimg.status.watch import Round, watch
from piimg.units import clock_time


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


def test_a_round_is_reported_when_its_line_would_change_or_every_few_rounds() -> None:
    clock = FakeClock()
    next_step = Check("firstboot k8s-master", State.PENDING, "step cluster, running")
    other_detail = Check("node k8s-master", State.OK, "127.0.2.10:22 answers (again)")
    checks = rounds_of(clock, *[[NODE_DOWN, BOOTING]] * 25, [NODE_UP, BOOTING], [other_detail, BOOTING],
                       [NODE_UP, next_step], [NODE_UP, BOOTED])
    seen: list[Round] = []
    outcome = watch(lambda: next(checks), timeout=3600, interval=10, on_round=seen.append, report_every=10,
                    now=clock.now, sleep=clock.sleep)
    assert outcome.last.ok and outcome.last.number == 29
    # 1: first; 11, 21: nothing changed for 10 rounds; 26: the node answers; 27: only an ok check's
    # detail changed (not reported); 28: what it waits for says something new
    assert [r.number for r in seen] == [1, 11, 21, 26, 28]
    assert [r.elapsed for r in seen] == [0, 100, 200, 250, 270]


# --- the CLI: what `piimg status --watch` prints, with a fake checker and the fake clock ---------

SPEC_DOC = {
    "network": {"subnet": "127.0.2.0/23", "gateway": "127.0.2.1", "dhcp_pool": "127.0.3.1-127.0.3.254"},
    "cluster": {"pools": [{"name": "default", "addresses": ["127.0.4.0/23"]}]},
    "nodes": [{"hostname": "k8s-master", "role": "server", "address": "127.0.2.10"}],
}


@pytest.fixture()
def scripted(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeClock]:
    """``scripted(round, round, ...)``: the CLI's checks return these rounds, one per call, on a fake clock."""
    (project / "piimg.yaml").write_text(yaml.safe_dump(SPEC_DOC))

    def script(*rounds: list[Check]) -> FakeClock:
        clock = FakeClock()
        it = iter(rounds)
        monkeypatch.setattr(status_cmds, "run_checks", lambda spec, opts: next(it))
        monkeypatch.setattr(watching, "watch", functools.partial(watching.watch, now=clock.now, sleep=clock.sleep))
        return clock

    return script


# --kubeconfig names a missing file: no kubeconfig lookup beyond it (and no SSH fetch)
WATCH = ("status", "--watch", "--no-router", "--kubeconfig", "missing.yaml", "--interval", "15")


def test_cli_watch_prints_changes_with_the_elapsed_time_and_how_long_it_took(scripted: Any, piimg: Any) -> None:
    clock = scripted(*[[NODE_DOWN, BOOTING]] * 3, [NODE_UP, BOOTING], [NODE_UP, BOOTED])
    r = piimg(*WATCH, "--timeout", "600")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [
        "[00:00 / 10:00] 0/2 checks ok; waiting for node k8s-master: 127.0.2.10:22 unreachable (Connection refused)",
        "[00:45 / 10:00] 1/2 checks ok; waiting for firstboot k8s-master: step k3s, running",
    ]
    assert r.stdout.splitlines()[-1] == "2/2 checks ok after 01:00: the cluster answers end to end"
    assert clock.sleeps == [15] * 4


def test_cli_watch_says_how_long_it_waited_and_what_was_not_ok(scripted: Any, piimg: Any) -> None:
    scripted(*[[NODE_DOWN, BOOTING]] * 5)
    r = piimg(*WATCH, "--timeout", "60")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "[00:00 / 01:00] 0/2 checks ok; waiting for node k8s-master: 127.0.2.10:22 unreachable (Connection refused)",
        "warning: --watch gave up after 01:00 (--timeout 60): 0/2 checks ok; "
        "still not ok: node k8s-master, firstboot k8s-master",
    ]
    assert r.stdout.splitlines()[-1] == "0/2 checks ok after 01:00"


def test_cli_without_watch_runs_once_and_names_no_time(scripted: Any, piimg: Any) -> None:
    clock = scripted([NODE_DOWN, BOOTING], [NODE_UP, BOOTED])
    r = piimg("status", "--no-router", "--kubeconfig", "missing.yaml")
    assert r.exit_code == 1 and r.stderr == "" and clock.sleeps == []
    assert r.stdout.splitlines()[-1] == "0/2 checks ok"


@pytest.mark.parametrize(("seconds", "text"), [(0, "00:00"), (59.9, "00:59"), (135, "02:15"), (3599, "59:59"),
                                               (3600, "1:00:00"), (3725, "1:02:05"), (-1, "00:00")])
def test_clock_time(seconds: float, text: str) -> None:
    assert clock_time(seconds) == text
