"""The breaker's state machine, case by case, on both backends.

Every test runs twice through the ``driver`` fixture: on the in-memory machine
(breaker/machine.py) and on the Redis Lua scripts (breaker/backends/lua/), with time stepped
by hand. Policy (tests/breaker/conftest.py): minimum 10 calls, trips at 50 % failures or 50 %
slow calls (slow = 1 s), 10 s window, OPEN for 10 s growing x2 up to 35 s, 3 probes,
a probe unreported after 20 s re-opens the breaker.
"""

from __future__ import annotations

import pytest

from breaker.state import Control, Outcome, State
from tests.support.driver import Driver

S, F, T, I = Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.IGNORED


def test_below_minimum_calls_never_trips(driver: Driver) -> None:
    driver.calls(*[F] * 9)
    snap = driver.snapshot()
    assert snap.state == State.CLOSED
    assert (snap.window.calls, snap.window.failures) == (9, 9)


def test_trips_exactly_at_the_failure_threshold(driver: Driver) -> None:
    results = driver.calls(S, F, S, F, S, F, S, F, S)
    assert [r.state for r in results] == [State.CLOSED] * 9
    last = driver.call(F)  # 5 of 10: exactly 50 %
    assert last.state == State.OPEN
    assert last.applied


def test_just_below_the_threshold_stays_closed(driver: Driver) -> None:
    driver.calls(S, S, S, S, S, S, F, F, F, F)  # 40 %
    assert driver.state == State.CLOSED
    driver.call(S)  # 4 of 11
    assert driver.state == State.CLOSED


def test_timeouts_are_failures(driver: Driver) -> None:
    driver.calls(*[S] * 5, *[T] * 4)
    assert driver.state == State.CLOSED
    assert driver.call(T).state == State.OPEN
    assert driver.snapshot().totals["timeout"] == 5


def test_slow_calls_trip_on_their_own_rate(driver: Driver) -> None:
    for _ in range(4):
        driver.call(S, duration=1.5)
    driver.calls(*[S] * 5)
    assert driver.state == State.CLOSED
    result = driver.call(S, duration=1.0)  # 5 slow of 10: the boundary counts as slow
    assert result.slow
    assert result.state == State.OPEN
    event = driver.backend.history(driver.name)[-1]
    assert "slow-call rate" in event.reason
    assert event.window.slow == 5
    assert driver.snapshot().totals["slow"] == 5


def test_buckets_expire_out_of_the_window(driver: Driver) -> None:
    driver.calls(*[F] * 9)
    driver.advance(9.999)  # window is 10 s: all nine still inside
    assert driver.snapshot().window.calls == 9
    driver.advance(0.001)  # now 10 s later: the first second's bucket has left
    assert driver.snapshot().window.calls == 0
    assert driver.call(F).state == State.CLOSED  # 1 call in the window, below the minimum


def test_window_slides_bucket_by_bucket(driver: Driver) -> None:
    driver.calls(*[F] * 5)  # t = 0
    driver.advance(5)
    driver.calls(*[S] * 4)  # t = 5
    driver.advance(5)  # t = 10: the failures left, the successes stay
    snap = driver.snapshot()
    assert (snap.window.calls, snap.window.failures) == (4, 0)


def test_open_rejects_until_the_wait_ends(driver: Driver) -> None:
    driver.trip()
    rejected = driver.admit()
    assert not rejected.admitted
    assert rejected.retry_after == 10.0
    driver.advance(9.999)
    assert not driver.admit().admitted
    assert driver.snapshot().totals["rejected"] == 2


def test_half_open_hands_out_exactly_the_permitted_probes(driver: Driver) -> None:
    driver.trip()
    driver.advance(10)
    answers = [driver.admit() for _ in range(5)]
    assert [a.admitted for a in answers] == [True, True, True, False, False]
    assert all(a.state == State.HALF_OPEN for a in answers)
    permits = [a.ticket.permit for a in answers if a.ticket]
    assert len(set(permits)) == 3 and None not in permits
    assert driver.snapshot().probes_outstanding == 3


def test_probe_success_closes_with_an_empty_window(driver: Driver) -> None:
    driver.trip()
    driver.advance(10)
    tickets = [driver.ticket() for _ in range(3)]
    assert driver.record(tickets[0], S).state == State.HALF_OPEN
    assert driver.record(tickets[1], S).state == State.HALF_OPEN
    closed = driver.record(tickets[2], S)
    assert closed.state == State.CLOSED
    snap = driver.snapshot()
    assert snap.window.calls == 0
    assert snap.consecutive_trips == 0
    assert driver.backend.history(driver.name)[-1].reason == "3 of 3 probes succeeded"


def test_probe_failure_reopens_with_a_growing_capped_wait(driver: Driver) -> None:
    driver.trip()
    waits = []
    for _ in range(3):
        driver.advance(driver.admit().retry_after or 0)
        tickets = [driver.ticket() for _ in range(3)]
        driver.record(tickets[0], F)
        driver.record(tickets[1], F)
        reopened = driver.record(tickets[2], S)  # 2 of 3 probes failed
        assert reopened.state == State.OPEN
        waits.append((reopened.open_until_ms - reopened.now_ms) / 1000)
    assert waits == [20.0, 35.0, 35.0]  # 10 x 2, 10 x 4 capped at 35, capped
    assert driver.snapshot().consecutive_trips == 4


def test_recovery_resets_the_wait_to_its_base(driver: Driver) -> None:
    driver.trip()
    driver.advance(10)
    for t in [driver.ticket() for _ in range(3)]:
        driver.record(t, F)
    driver.advance(20)
    for t in [driver.ticket() for _ in range(3)]:
        driver.record(t, S)
    assert driver.state == State.CLOSED
    driver.trip()
    assert driver.admit().retry_after == 10.0


def test_ignored_calls_never_count(driver: Driver) -> None:
    driver.calls(*[I] * 30)
    snap = driver.snapshot()
    assert snap.state == State.CLOSED
    assert snap.window.calls == 0
    assert snap.totals["ignored"] == 30


def test_an_ignored_probe_gives_its_permit_back(driver: Driver) -> None:
    driver.trip()
    driver.advance(10)
    tickets = [driver.ticket() for _ in range(3)]
    assert not driver.admit().admitted
    driver.record(tickets[0], I)
    replacement = driver.ticket()  # the freed permit
    assert not driver.admit().admitted
    for t in (tickets[1], tickets[2], replacement):
        driver.record(t, S)
    assert driver.state == State.CLOSED


def test_a_probe_that_outlives_its_wait_reopens_the_breaker(driver: Driver) -> None:
    """Issue 22 item 6: a permit was reclaimed and handed to a new caller while its probe
    still ran (4 probes in flight with N = 2 against a hanging model). A probe that outlives
    max_wait_in_half_open is evidence that the model hangs: back to OPEN, no new probe."""
    driver.trip()
    driver.advance(10)
    tickets = [driver.ticket() for _ in range(3)]  # the model hangs: never reported
    driver.advance(19.999)
    assert not driver.admit().admitted
    driver.advance(0.001)
    refused = driver.admit()
    assert not refused.admitted  # never a fourth probe while three may still run
    assert refused.state == State.OPEN
    assert refused.retry_after == pytest.approx(20.0)  # the wait grows, as after any failed probe
    late = driver.record(tickets[0], F)  # the hung probe returns after all
    assert not late.applied
    snap = driver.snapshot()
    assert snap.state == State.OPEN
    assert snap.totals["reclaimed"] == 3
    assert snap.totals["stale"] == 1
    assert snap.totals["probes_granted"] == 3
    event = driver.backend.history(driver.name, 1)[0]
    assert event.reason == "3 probe(s) not reported within max_wait_in_half_open (20s)"


def test_a_lapsed_probe_is_noticed_by_the_timer_too(driver: Driver) -> None:
    """advance() (a paused fleet's timer) re-opens the breaker as an admission would."""
    driver.trip()
    driver.advance(10)
    driver.ticket()
    driver.advance(20)
    assert driver.backend.advance(driver.name, driver.policy, driver.who).state == State.OPEN


def test_outcomes_from_an_earlier_epoch_are_stale(driver: Driver) -> None:
    early = [driver.ticket() for _ in range(5)]  # admitted while CLOSED, still running
    driver.trip()
    assert not driver.record(early[0], F).applied
    driver.advance(10)
    for t in [driver.ticket() for _ in range(3)]:
        driver.record(t, S)
    assert driver.state == State.CLOSED
    # Late failures from before the trip cannot push the recovered breaker back open.
    for t in early[1:]:
        assert not driver.record(t, F).applied
    snap = driver.snapshot()
    assert snap.window.calls == 0
    assert snap.totals["stale"] == 5


def test_forced_open_rejects_until_reset(driver: Driver) -> None:
    driver.control(Control.FORCE_OPEN)
    driver.advance(3600)
    assert not driver.admit().admitted
    assert driver.state == State.FORCED_OPEN
    driver.control(Control.RESET)
    assert driver.admit().admitted


def test_disabled_admits_and_records_nothing(driver: Driver) -> None:
    driver.control(Control.DISABLE)
    before = driver.snapshot().totals
    results = driver.calls(*[F] * 25)
    assert all(not r.applied and r.state == State.DISABLED for r in results)
    assert driver.snapshot().totals == before


def test_metrics_only_records_and_never_trips(driver: Driver) -> None:
    driver.control(Control.METRICS_ONLY)
    driver.calls(*[F] * 25)
    snap = driver.snapshot()
    assert snap.state == State.METRICS_ONLY
    assert (snap.window.calls, snap.window.failures) == (25, 25)


def test_manual_trip_recovers_by_itself(driver: Driver) -> None:
    driver.control(Control.TRIP)
    assert driver.state == State.OPEN
    driver.advance(10)
    assert driver.admit().state == State.HALF_OPEN


def test_reset_empties_the_window(driver: Driver) -> None:
    driver.calls(*[F] * 9)
    driver.control(Control.RESET)
    assert driver.call(F).state == State.CLOSED
    assert driver.snapshot().window.calls == 1


def test_policy_change_mid_window_applies_on_the_next_call(driver: Driver) -> None:
    driver.set_policy(failure_rate_threshold=0.7)
    driver.calls(*[S] * 4, *[F] * 6)  # 60 %: under 70 %
    assert driver.state == State.CLOSED
    driver.set_policy(failure_rate_threshold=0.5)
    assert driver.call(S).state == State.OPEN  # 6 of 11 = 54.5 % >= 50 %


def test_stored_policy_wins_over_the_callers_default(driver: Driver) -> None:
    driver.set_policy(minimum_calls=3)
    driver.calls(F, F)
    assert driver.call(F).state == State.OPEN
    assert driver.backend.get_policy(driver.name).minimum_calls == 3


def test_events_carry_the_window_figures(driver: Driver) -> None:
    driver.calls(S, S, S, S, F, F, F, F, F)
    driver.call(F)
    event = driver.backend.history(driver.name)[-1]
    assert (event.from_state, event.to_state) == (State.CLOSED, State.OPEN)
    assert (event.window.calls, event.window.failures) == (10, 6)
    assert event.epoch == 1 and event.consecutive_trips == 1
    assert event.open_until_ms - event.at_ms == 10_000
    assert event.who == driver.who


def test_a_batch_is_judged_outcome_by_outcome(driver: Driver) -> None:
    """Outcomes sent together (the write-behind recorder groups them) are judged in order,
    as if sent alone: the one that trips makes the rest of the batch stale."""
    from breaker.backend import RecordRequest

    tickets = [driver.ticket() for _ in range(14)]
    outcomes = [S, S, S, S, S, F, F, F, F, F, F, F, S, F]  # the 10th call (5 of 10 failed) trips
    results = driver.backend.record_many(
        [RecordRequest(driver.name, driver.policy, t, o, 0.01, driver.who) for t, o in zip(tickets, outcomes)]
    )
    assert [r.applied for r in results] == [True] * 10 + [False] * 4
    assert [r.state for r in results] == [State.CLOSED] * 9 + [State.OPEN] * 5  # after each outcome
    snap = driver.snapshot()
    assert snap.totals["stale"] == 4 and snap.totals["success"] == 6 and snap.totals["failure"] == 8
    event = driver.backend.history(driver.name)[-1]
    assert (event.window.calls, event.window.failures) == (10, 5)


def test_a_batch_mixes_slow_and_ignored_outcomes(driver: Driver) -> None:
    from breaker.backend import RecordRequest

    tickets = [driver.ticket() for _ in range(4)]
    outcomes = [(S, 0.1), (S, 1.5), (I, 5.0), (Outcome.SLOW, 0.1)]
    results = driver.backend.record_many(
        [RecordRequest(driver.name, driver.policy, t, o, d, driver.who) for t, (o, d) in zip(tickets, outcomes)]
    )
    assert [(r.applied, r.slow) for r in results] == [(True, False), (True, True), (False, False), (True, True)]
    snap = driver.snapshot()
    assert (snap.window.calls, snap.window.slow) == (3, 2)
