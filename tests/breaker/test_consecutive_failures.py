"""``consecutive_failures_threshold``: K failures in a row trip CLOSED to OPEN without
waiting for ``minimum_calls`` (issue 21: a low-traffic model whose every call fails), on
both backends through the ``driver`` fixture (tests/breaker/conftest.py: minimum 10 calls,
50 % threshold, slow = 1 s, 10 s window)."""

from __future__ import annotations

import pytest

from breaker.policy import BreakerPolicy
from breaker.state import Control, Outcome, State
from tests.support.driver import Driver

S, F, T, I = Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.IGNORED


@pytest.fixture
def streak(driver: Driver) -> Driver:
    driver.policy = driver.policy.model_copy(update={"consecutive_failures_threshold": 3})
    return driver


def test_a_low_traffic_model_failing_every_call_trips_after_k_calls(streak: Driver) -> None:
    # One call every 30 s: the 10 s window never holds more than one call.
    results = []
    for _ in range(3):
        results.append(streak.call(F))
        streak.advance(30)
    assert [r.state for r in results] == [State.CLOSED, State.CLOSED, State.OPEN]
    event = streak.backend.history(streak.name)[-1]
    assert event.reason == "3 consecutive failures >= 3"
    assert event.window.calls == 1  # far below minimum_calls: the streak alone tripped it


def test_timeouts_count_and_a_success_ends_the_streak(streak: Driver) -> None:
    streak.calls(F, T, S, F, T)
    assert streak.state == State.CLOSED
    assert streak.snapshot().consecutive_failures == 2
    assert streak.call(F).state == State.OPEN


def test_a_slow_success_ends_the_streak_too(streak: Driver) -> None:
    streak.calls(F, F)
    assert streak.call(S, duration=1.5).slow
    streak.calls(F, F)
    assert streak.state == State.CLOSED


def test_an_ignored_outcome_neither_counts_nor_ends_it(streak: Driver) -> None:
    streak.calls(F, I, F, I, I)
    assert streak.state == State.CLOSED
    assert streak.call(F).state == State.OPEN


def test_the_streak_belongs_to_its_epoch(streak: Driver) -> None:
    held = [streak.ticket() for _ in range(2)]
    streak.calls(F, F)
    streak.control(Control.RESET)  # a new epoch: the streak starts again
    assert streak.snapshot().consecutive_failures == 0
    for ticket in held:  # stale outcomes never extend a streak
        assert not streak.record(ticket, F).applied
    streak.calls(F, F)
    assert streak.state == State.CLOSED


def test_metrics_only_counts_but_never_trips(streak: Driver) -> None:
    streak.control(Control.METRICS_ONLY)
    streak.calls(F, F, F, F)
    snap = streak.snapshot()
    assert (snap.state, snap.consecutive_failures) == (State.METRICS_ONLY, 4)


def test_off_by_default(driver: Driver) -> None:
    assert driver.policy.consecutive_failures_threshold is None
    driver.calls(*[F] * 9)
    assert driver.state == State.CLOSED


def test_an_operator_can_set_it_live(driver: Driver) -> None:
    driver.calls(F, F)
    driver.set_policy(consecutive_failures_threshold=3)
    assert driver.call(F).state == State.OPEN


def test_the_threshold_is_checked() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(consecutive_failures_threshold=0)
    assert BreakerPolicy.from_redis(BreakerPolicy().to_redis()).consecutive_failures_threshold is None
    assert BreakerPolicy.from_redis(BreakerPolicy(consecutive_failures_threshold=4).to_redis()) == \
        BreakerPolicy(consecutive_failures_threshold=4)
