"""resilience4j's CircuitBreakerStateMachineTest, ported: fusebox speaks resilience4j's
vocabulary, so where it does not say otherwise it behaves like resilience4j.

The scenarios of the other resilience4j tests (SlidingTimeWindowMetricsTest,
CircuitBreakerEventPublisherTest, CircuitBreakerExceptionHandlingTest,
CircuitBreakerAutoTransitionStateMachineTest, and METRICS_ONLY's shadow) are in
test_resilience4j_events.py; those that need several processes, the metrics endpoint, the
alert service or the CLI in test_resilience4j_fleet.py. Every test here runs on the
in-memory machine and on the Redis scripts with a manual clock (the ``r4j`` fixture).

Each test is one time-based scenario of resilience4j's own tests, written anew from what it
checks; its docstring names the Java test method. The full table (scenario, resilience4j,
fusebox, why) is the "Conformance with resilience4j" section of docs/breaker.md. The
policy is resilience4j's test configuration (tests/support/r4j.py).
"""

from __future__ import annotations

import pytest

from breaker.state import Control, State
from tests.support.driver import Driver
from tests.support.r4j import F, I, S, to_half_open, transitions


# -- operator transitions ------------------------------------------------------------------------


def test_no_event_for_internal_transitions(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions:
    an operator action on a breaker already in the target state publishes nothing and keeps
    the epoch (fusebox has no operator HALF_OPEN, so that pair is left out)."""
    epochs = []
    for action in (Control.TRIP, Control.DISABLE, Control.METRICS_ONLY, Control.FORCE_OPEN):
        for _ in range(2):
            r4j.control(action)
            epochs.append(r4j.snapshot().epoch)
    assert transitions(r4j) == [
        (State.CLOSED, State.OPEN), (State.OPEN, State.DISABLED),
        (State.DISABLED, State.METRICS_ONLY), (State.METRICS_ONLY, State.FORCED_OPEN),
    ]
    assert epochs == [1, 1, 2, 2, 3, 3, 4, 4]


def test_repeated_trip_keeps_the_wait(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions
    (OPEN to OPEN): a second trip of an OPEN breaker neither restarts its wait nor counts as
    a trip (resilience4j starts a new OPEN state silently; fusebox changes nothing)."""
    r4j.control(Control.TRIP)
    until = r4j.snapshot().open_until_ms
    r4j.advance(3)
    r4j.control(Control.TRIP)
    snap = r4j.snapshot()
    assert (snap.open_until_ms, snap.consecutive_trips, snap.totals.get("to_open")) == (until, 1, 1)
    r4j.advance(2)
    assert r4j.admit().state == State.HALF_OPEN


def test_trip_of_an_open_breaker_whose_wait_is_over_starts_a_new_wait(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions
    (OPEN to OPEN, the wait over): an OPEN breaker whose wait ended lets a probe through on
    its next call, so a trip then does change something: a new wait, published."""
    r4j.control(Control.TRIP)
    r4j.advance(5)
    r4j.control(Control.TRIP)
    assert not r4j.admit().admitted
    assert transitions(r4j) == [(State.CLOSED, State.OPEN), (State.OPEN, State.OPEN)]
    r4j.advance(5)
    assert r4j.admit().state == State.HALF_OPEN


def test_reset_of_a_closed_breaker_empties_the_window(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldResetClosedState: a reset always acts (it empties
    the window), so it is published even on a CLOSED breaker, like resilience4j's reset event."""
    r4j.calls(S, S)
    assert r4j.snapshot().window.calls == 2
    r4j.control(Control.RESET)
    snap = r4j.snapshot()
    assert (snap.state, snap.window.calls, snap.epoch) == (State.CLOSED, 0, 1)
    assert transitions(r4j) == [(State.CLOSED, State.CLOSED)]


# -- rates below the minimum number of calls ------------------------------------------------------


def test_rates_below_minimum_calls_are_not_judged(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldRecordMetricsInMetricsOnlyState (and
    shouldOpenAfterFailureRateThresholdExceeded): below the minimum number of calls the
    failure rate is "not judged" (resilience4j: -1; fusebox: None, and the words "not
    judged: 3 of 5 calls" on the page and in the CLI), from the minimum on it is the rate."""
    from api.cli.breakers import breakers_table
    from api.views import snapshot_json
    from rich.console import Console

    r4j.calls(F, F, F)
    w = r4j.snapshot().window
    assert (w.calls, w.failures, w.judged, w.judged_failure_rate, w.judged_slow_rate) == (3, 3, False, None, None)
    assert w.judgement == "not judged: 3 of 5 calls"
    data = snapshot_json(r4j.snapshot())["window"]
    assert (data["failure_rate"], data["judged"], data["judgement"]) == (None, False, "not judged: 3 of 5 calls")
    console = Console(width=200, record=True)
    console.print(breakers_table([r4j.snapshot()]))
    assert "not judged: 3 of 5 calls" in console.export_text() and "100%" not in console.export_text()

    r4j.calls(S)
    r4j.call(S)  # 5 calls: 3 failed, 60 % >= 50 %: trips, and the trip's window is judged
    assert r4j.state == State.OPEN
    event = r4j.backend.history(r4j.name)[-1]
    assert (event.window.calls, event.window.failures) == (5, 3)


def test_judged_rate_from_the_minimum_on(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldOpenAfterFailureRateThresholdExceeded: with the
    window at its minimum the rate is judged (1 failure of 5: 20 %)."""
    r4j.calls(F, S, S, S, S)
    w = r4j.snapshot().window
    assert (w.judged, w.judged_failure_rate, w.judgement) == (True, 0.2, "")
    assert r4j.state == State.CLOSED


# -- CircuitBreakerStateMachineTest: admission -------------------------------------------------------


@pytest.mark.parametrize("action", [Control.TRIP, Control.FORCE_OPEN])
def test_open_and_forced_open_refuse_and_count(r4j: Driver, action: Control) -> None:
    """CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsOpen and
    ...WhenStateIsForcedOpen: a refused call is counted as not permitted."""
    r4j.control(action)
    answer = r4j.admit()
    assert not answer.admitted and answer.state == action.target
    assert r4j.snapshot().totals["rejected"] == 1


def test_half_open_permits_exactly_the_probes(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenNotFurtherTestCallsArePermitted
    and shouldOnlyPermitFourCallsInHalfOpenState: four probe permits, the fifth and sixth
    refused (and counted); the same again after the next OPEN -> HALF_OPEN."""
    for cycle in range(2):
        to_half_open(r4j)
        answers = [r4j.admit() for _ in range(6)]
        assert [a.admitted for a in answers] == [True] * 4 + [False] * 2
        assert answers[0].state == State.HALF_OPEN
        assert r4j.snapshot().totals["rejected"] == 2 * (cycle + 1)


def test_an_ignored_probe_gives_its_permit_back(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldIncreaseCounterOnReleasePermission and
    shouldReleasePermissionWhenExceptionIgnored: an ignored call in HALF_OPEN frees its
    permit for another caller (fusebox has no explicit releasePermission: IGNORED is it)."""
    to_half_open(r4j)
    tickets = [r4j.ticket() for _ in range(4)]
    assert not r4j.admit().admitted
    assert not r4j.record(tickets[0], I).applied
    assert r4j.admit().admitted
    assert r4j.snapshot().state == State.HALF_OPEN


def test_ignored_probes_then_successes_close(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldIgnoreExceptionsAndThenTransitionToClosed: ignored
    probes decide nothing; four successful probes close the breaker."""
    to_half_open(r4j)
    for _ in range(3):
        r4j.record(r4j.ticket(), I)
    assert r4j.state == State.HALF_OPEN
    results = r4j.calls(S, S, S, S)
    assert results[-1].state == State.CLOSED
    assert r4j.snapshot().totals["ignored"] == 3


# -- CircuitBreakerStateMachineTest: tripping on the window ------------------------------------------


def test_trips_on_failures_spread_over_seconds(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldOpenAfterFailureRateThresholdExceeded2: calls one
    second apart stay in the 20 s window; 3 failures of 6 trip at 50 %."""
    for outcome in (S, S, S, F, F):
        r4j.call(outcome)
        r4j.advance(1)
    assert r4j.state == State.CLOSED  # 2 of 5: 40 %
    assert r4j.call(F).state == State.OPEN


def test_trips_on_the_slow_call_rate(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceeded: slow
    failure, slow success, fast failure, fast success, slow success: 3 of 5 slow (60 %)
    trips on the slow-call rate while the failure rate (40 %) would not."""
    r4j.call(F, duration=5)
    r4j.call(S, duration=5)
    r4j.call(F, duration=0.1)
    r4j.call(S, duration=0.1)
    assert r4j.state == State.CLOSED
    assert r4j.call(S, duration=5).state == State.OPEN
    event = r4j.backend.history(r4j.name)[-1]
    assert event.reason == "window slow-call rate 60.0% >= 50.0% over 5 calls"
    assert (event.window.calls, event.window.failures, event.window.slow) == (5, 2, 3)


def test_slow_calls_timed_on_the_clock(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceededUsingMockClock:
    calls that take 5, 5, 1, 1, 5 s of the clock (the clock moves while they run); the
    window counts them as they end and trips on the fifth (3 slow of 5)."""
    for i, seconds in enumerate((5, 5, 1, 1, 5)):
        ticket = r4j.ticket()
        r4j.advance(seconds)
        result = r4j.record(ticket, S, duration=seconds)
        w = r4j.snapshot().window if i < 4 else None
        if w is not None:
            assert (w.calls, w.slow, result.state) == (i + 1, [1, 2, 2, 2][i], State.CLOSED)
    assert result.state == State.OPEN


# -- CircuitBreakerStateMachineTest: OPEN to HALF_OPEN, and back --------------------------------------


def test_half_open_after_the_wait(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitDuration: refused
    3 s into the 5 s wait, admitted as a probe after 6 s."""
    r4j.control(Control.TRIP)
    assert not r4j.admit().admitted
    r4j.advance(3)
    assert not r4j.admit().admitted
    r4j.advance(3)
    answer = r4j.admit()
    assert answer.admitted and answer.state == State.HALF_OPEN and answer.ticket.permit is not None


@pytest.mark.parametrize("wait", [7200.0, 1800.0])
def test_half_open_after_a_long_wait(r4j: Driver, wait: float) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterPassedWaitDuration (2 h)
    and shouldTransitionToHalfOpenAfterPassedWaitUntil (30 min): fusebox has no per-trip
    duration or deadline; the policy's wait in OPEN says it (set live by an operator)."""
    r4j.set_policy(wait_in_open=wait, max_wait_in_open=wait)
    r4j.control(Control.TRIP)
    r4j.advance(wait / 2)
    assert not r4j.admit().admitted
    r4j.advance(wait / 2 + 1)
    assert r4j.admit().state == State.HALF_OPEN


def test_wait_grows_on_repeated_trips(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitInterval: an
    exponential wait (resilience4j's IntervalFunction.ofExponentialBackoff, fusebox's
    wait_in_open_multiplier 1.5): 5 s, then 7.5 s after a trip from HALF_OPEN."""
    r4j.set_policy(wait_in_open_multiplier=1.5, max_wait_in_open=60.0)
    r4j.control(Control.TRIP)
    r4j.advance(3)
    assert not r4j.admit().admitted
    r4j.advance(3)
    assert r4j.admit().state == State.HALF_OPEN
    r4j.control(Control.TRIP)
    r4j.advance(6)
    assert not r4j.admit().admitted
    r4j.advance(5)
    assert r4j.admit().state == State.HALF_OPEN


def test_probes_above_the_failure_rate_reopen(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold:
    probes F, F, S, F (75 %) send HALF_OPEN back to OPEN."""
    to_half_open(r4j)
    results = r4j.calls(F, F, S, F)
    assert [r.state for r in results] == [State.HALF_OPEN] * 3 + [State.OPEN]


def test_probes_above_the_slow_call_rate_reopen(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionBackToOpenStateWhenSlowCallRateIsAboveThreshold:
    three slow successful probes of four (75 % slow, 0 % failed) reopen the breaker."""
    to_half_open(r4j)
    for _ in range(3):
        r4j.call(S, duration=5)
    assert r4j.call(S, duration=1).state == State.OPEN
    event = r4j.backend.history(r4j.name)[-1]
    assert event.reason == "probe slow-call rate 75.0% >= 50.0% over 4 calls"
    assert (event.window.failures, event.window.slow) == (0, 3)


def test_probes_below_the_failure_rate_close(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold:
    probes F, S, S, S (25 %) close the breaker, with an empty window."""
    to_half_open(r4j)
    assert r4j.calls(F, S, S, S)[-1].state == State.CLOSED
    assert r4j.snapshot().window.calls == 0


def test_half_open_max_wait_goes_back_to_open(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.circuitBreakerTransitionsToOpenAfterWaitDurationInHalfOpenState:
    a HALF_OPEN breaker whose probe outlives max_wait_in_half_open (1 s) goes back to OPEN;
    the permit is never handed to a new caller."""
    to_half_open(r4j)
    r4j.ticket()
    r4j.advance(2)
    answer = r4j.admit()
    assert not answer.admitted
    assert answer.state == State.OPEN


# -- CircuitBreakerStateMachineTest: operator states ------------------------------------------------


def test_disabled_admits_everything_and_records_nothing(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldDisableCircuitBreaker (and
    CircuitBreakerEventPublisherTest.shouldNotProduceEventsInDisabledState): DISABLED admits
    every call, records none, never trips, publishes nothing after its own transition."""
    r4j.control(Control.DISABLE)
    results = r4j.calls(*[F] * 10)
    assert all(not r.applied and r.state == State.DISABLED for r in results)
    snap = r4j.snapshot()
    assert (snap.window.calls, snap.totals.get("failure", 0)) == (0, 0)
    assert len(r4j.backend.history(r4j.name)) == 1


def test_forced_open_refuses_until_reset(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldForceOpenCircuitBreaker: FORCED_OPEN refuses every
    call however long it lasts, until an operator resets it."""
    r4j.control(Control.FORCE_OPEN)
    r4j.advance(3600)
    assert not r4j.admit().admitted and r4j.state == State.FORCED_OPEN
    r4j.control(Control.RESET)
    assert r4j.admit().admitted


def test_reset_closes_an_open_breaker(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldResetToClosedState (and shouldResetMetrics)."""
    r4j.trip()
    r4j.control(Control.RESET)
    snap = r4j.snapshot()
    assert (snap.state, snap.window.calls, snap.consecutive_trips) == (State.CLOSED, 0, 0)


def test_metrics_only_starts_with_an_empty_window(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldResetMetricsAfterMetricsOnlyStateTransition."""
    r4j.calls(S, S)
    r4j.control(Control.METRICS_ONLY)
    assert r4j.snapshot().window.calls == 0


def test_no_operator_half_open(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldNotAllowTransitionFromClosedToHalfOpen: fusebox
    has no operator action to HALF_OPEN at all (only the wait in OPEN leads there), so the
    illegal CLOSED -> HALF_OPEN cannot be asked for."""
    assert State.HALF_OPEN not in {c.target for c in Control}
    assert r4j.admit().state == State.CLOSED


def test_a_new_breaker_starts_closed(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.circuitBreakerInitializeInClosedState: a breaker starts
    CLOSED with an empty window (fusebox has no configurable initial state: an operator
    action after creation does what initialState does)."""
    snap = r4j.snapshot()
    assert (snap.state, snap.epoch, snap.window.calls) == (State.CLOSED, 0, 0)


@pytest.mark.parametrize("action", [Control.TRIP, Control.FORCE_OPEN, Control.DISABLE, Control.RESET])
def test_every_state_may_go_metrics_only(r4j: Driver, action: Control) -> None:
    """CircuitBreakerStateMachineTest.allCircuitBreakerStatesAllowTransitionToMetricsOnlyMode
    (and allCircuitBreakerStatesAllowTransitionToItsOwnState): any state may be put in
    METRICS_ONLY; METRICS_ONLY to itself is allowed and changes nothing."""
    r4j.control(action)
    r4j.control(Control.METRICS_ONLY)
    epoch = r4j.snapshot().epoch
    r4j.control(Control.METRICS_ONLY)
    snap = r4j.snapshot()
    assert (snap.state, snap.epoch) == (State.METRICS_ONLY, epoch)
