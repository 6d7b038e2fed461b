"""resilience4j's SlidingTimeWindowMetricsTest, CircuitBreakerEventPublisherTest,
CircuitBreakerExceptionHandlingTest and CircuitBreakerAutoTransitionStateMachineTest, and
METRICS_ONLY's would-trip events (shouldRecordMetricsInMetricsOnlyState,
shouldPublishEachEventOnceInMetricOnlyState), ported; with the what-if history. On both
backends with a manual clock (the ``r4j`` fixture).

Each test is one time-based scenario of resilience4j's own tests, written anew from what it
checks; its docstring names the Java test method. The full table (scenario, resilience4j,
fusebox, why) is the "Conformance with resilience4j" section of docs/breaker.md. The
policy is resilience4j's test configuration (tests/support/r4j.py).
"""

from __future__ import annotations

from breaker.state import Control, Outcome, State
from tests.support.driver import Driver
from tests.support.r4j import F, I, R4J_POLICY, S, SLOW, transitions, with_policy, would_trips


# -- METRICS_ONLY: a shadow that says when it would have tripped ----------------------------------


def test_metrics_only_records_and_says_once_it_would_trip(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldRecordMetricsInMetricsOnlyState: METRICS_ONLY
    admits and records every call, never transitions, and publishes one failure-rate
    exceeded event when the window (5 calls, 3 failed: 60 %) crosses the threshold, not
    again while it stays above."""
    r4j.control(Control.METRICS_ONLY)
    results = r4j.calls(F, F, F, S)
    assert [r.state for r in results] == [State.METRICS_ONLY] * 4 and all(r.applied for r in results)
    assert would_trips(r4j) == []
    r4j.call(S)
    assert would_trips(r4j) == ["would trip: window failure rate 60.0% >= 50.0% over 5 calls"]
    r4j.call(F)  # still above: no second event
    snap = r4j.snapshot()
    assert (snap.state, snap.window.calls, snap.window.failures) == (State.METRICS_ONLY, 6, 4)
    assert len(would_trips(r4j)) == 1
    assert snap.totals["would_trip_failure_rate"] == 1
    assert transitions(r4j) == [(State.CLOSED, State.METRICS_ONLY)]


def test_metrics_only_publishes_each_rate_once(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldPublishEachEventOnceInMetricOnlyState: five slow
    failures cross both thresholds: one failure-rate and one slow-call-rate event."""
    r4j.control(Control.METRICS_ONLY)
    for _ in range(5):
        r4j.call(F, duration=5.0)
    reasons = would_trips(r4j)
    assert reasons == ["would trip: window failure rate 100.0% >= 50.0% over 5 calls",
                       "would trip: window slow-call rate 100.0% >= 50.0% over 5 calls"]
    totals = r4j.snapshot().totals
    assert (totals["would_trip_failure_rate"], totals["would_trip_slow_call_rate"]) == (1, 1)


def test_metrics_only_says_again_after_falling_below(r4j: Driver) -> None:
    """Once per crossing (fusebox: resilience4j says it once per state): the rate falls
    below the threshold, then crosses again: a second event."""
    r4j.control(Control.METRICS_ONLY)
    r4j.calls(F, F, F, F, F)  # 100 %: first crossing
    r4j.calls(*[S] * 6)  # 5 of 11: 45 %: below
    r4j.calls(F, F)  # 7 of 13: 54 %: second crossing
    assert len(would_trips(r4j)) == 2
    assert r4j.snapshot().totals["would_trip_failure_rate"] == 2


# -- what-if: the recorded history replayed against another policy --------------------------------


def test_history_is_recorded_per_second(r4j: Driver) -> None:
    """The per-second record behind ``fusebox breaker what-if`` (kept 24 h): what entered
    the window, by second of store time, on both backends."""
    r4j.calls(S, F)
    r4j.call(S, duration=5.0)
    r4j.advance(1)
    r4j.calls(F, I)  # an ignored call never enters the window, nor the history
    start = int(r4j.clock.now) - 1
    assert r4j.backend.history_buckets(r4j.name) == {start: (3, 1, 1), start + 1: (1, 1, 0)}  # type: ignore[attr-defined]
    r4j.advance(25 * 3600)
    r4j.call(S)
    assert r4j.backend.history_buckets(r4j.name) == {int(r4j.clock.now): (1, 0, 0)}  # type: ignore[attr-defined]


def test_what_if_replays_the_history_against_another_policy() -> None:
    """An hour of traffic with one bad minute (40 % failures): the recorded policy (50 %)
    would not have tripped, a stricter one (30 %) trips in that minute, and skips its wait
    in OPEN before judging again."""
    from breaker.whatif import replay

    start = 1_700_000_000
    buckets = {start + i: (10, 1, 0) for i in range(0, 3600, 5)}  # 10 % failures
    buckets.update({start + 1800 + i: (10, 4, 0) for i in range(60)})  # a bad minute
    assert replay(buckets, R4J_POLICY) == []
    stricter = R4J_POLICY.model_copy(update={"failure_rate_threshold": 0.3, "wait_in_open": 30.0})
    trips = replay(buckets, stricter)
    # 26 of the last 80 calls failed 5 s into the bad minute; 30 s OPEN; the first second
    # after it trips again (the real breaker's probes would have failed there).
    assert [t.at - start for t in trips] == [1805, 1835]
    assert [t.reason for t in trips] == ["window failure rate 32.5% >= 30.0% over 80 calls",
                                         "window failure rate 40.0% >= 30.0% over 10 calls"]


# -- CircuitBreakerAutoTransitionStateMachineTest -----------------------------------------------------


def test_open_moves_to_half_open_by_time_alone(r4j: Driver) -> None:
    """CircuitBreakerAutoTransitionStateMachineTest.testAutoTransition: with no call at all,
    the wait in OPEN ends in HALF_OPEN (fusebox: any process's timer calls ``advance``,
    idempotent, decided on the store's clock); no probe permit is taken by it."""
    r4j.control(Control.TRIP)
    r4j.advance(4.9)
    assert r4j.backend.advance(r4j.name, r4j.policy, "timer").state == State.OPEN
    r4j.advance(0.1)
    assert r4j.backend.advance(r4j.name, r4j.policy, "timer").state == State.HALF_OPEN
    assert r4j.backend.advance(r4j.name, r4j.policy, "timer").state == State.HALF_OPEN
    assert r4j.snapshot().probes_outstanding == 0
    assert [r4j.admit().admitted for _ in range(5)] == [True] * 4 + [False]


def test_an_operator_state_cancels_the_auto_transition(r4j: Driver) -> None:
    """CircuitBreakerAutoTransitionStateMachineTest.shouldCancelAutoTransition and
    notCancelAutoTransitionFutureIfAlreadyDone: forced open before the wait ends, the breaker
    does not move to HALF_OPEN when the wait would have ended."""
    r4j.control(Control.TRIP)
    r4j.control(Control.FORCE_OPEN)
    r4j.advance(10)
    assert r4j.backend.advance(r4j.name, r4j.policy, "timer").state == State.FORCED_OPEN


# -- CircuitBreakerExceptionHandlingTest ------------------------------------------------------------


class BusinessError(Exception):
    """The caller's own mistake (bad input): says nothing about the model."""


def record_exception(d: Driver, classifier: object, exc: BaseException) -> None:
    d.record(d.ticket(), classifier.classify(exc))  # type: ignore[attr-defined]


def test_runtime_error_fails_business_error_ignored(r4j: Driver) -> None:
    """CircuitBreakerExceptionHandlingTest.shouldRecordRuntimeExceptionAsFailureAndBusinessExceptionAsSuccess
    and shouldRecordIOExceptionAsFailureAndBusinessExceptionAsSuccess: an exception that is
    not the model's fault is IGNORED, not a success as in resilience4j: a caller's bad input
    must not dilute the failure rate either (it is counted in the totals only)."""
    from breaker.errors import ExceptionClassifier

    classifier = ExceptionClassifier(ignored=(BusinessError,))
    record_exception(r4j, classifier, RuntimeError())
    record_exception(r4j, classifier, BusinessError("test"))
    snap = r4j.snapshot()
    assert (snap.window.calls, snap.window.failures) == (1, 1)
    assert (snap.totals["failure"], snap.totals["ignored"]) == (1, 1)


def test_a_classifier_may_decide_by_anything(r4j: Driver) -> None:
    """CircuitBreakerExceptionHandlingTest.shouldRecordBusinessExceptionAsFailure: the
    decision may depend on more than the type (there a predicate on the message; here a
    classifier that overrides ``classify``)."""
    from breaker.errors import ExceptionClassifier

    class ByMessage(ExceptionClassifier):
        def classify(self, exc: BaseException) -> Outcome:
            return Outcome.FAILURE if str(exc) == "record" else Outcome.IGNORED

    record_exception(r4j, ByMessage(), BusinessError("record"))
    record_exception(r4j, ByMessage(), BusinessError("bla"))
    snap = r4j.snapshot()
    assert (snap.window.calls, snap.window.failures, snap.totals["ignored"]) == (1, 1, 1)


def test_ignored_exceptions_stay_out_of_the_window(r4j: Driver) -> None:
    """CircuitBreakerExceptionHandlingTest.shouldIgnoreNumberFormatException (and
    CircuitBreakerEventPublisherTest.shouldConsumeIgnoredErrorEvent): an ignored exception
    type counts neither as failure nor as success; it is seen in the totals."""
    from breaker.errors import ExceptionClassifier

    classifier = ExceptionClassifier(ignored=(ValueError,))
    record_exception(r4j, classifier, RuntimeError())
    record_exception(r4j, classifier, ValueError("not a number"))
    snap = r4j.snapshot()
    assert (snap.window.calls, snap.window.failures, snap.totals.get("success", 0)) == (1, 1, 0)
    assert snap.totals["ignored"] == 1


# -- CircuitBreakerEventPublisherTest ---------------------------------------------------------------


def test_calls_publish_no_events_but_are_counted(r4j: Driver) -> None:
    """CircuitBreakerEventPublisherTest.shouldConsumeOnSuccessEvent, shouldConsumeOnErrorEvent
    and shouldConsumeOnEvent: fusebox publishes no event per call (one per call across a
    fleet would flood pub/sub on the hot path); the lifetime totals count each outcome."""
    r4j.calls(S, F)
    assert r4j.backend.history(r4j.name) == []
    totals = r4j.snapshot().totals
    assert (totals["success"], totals["failure"]) == (1, 1)


def test_transition_and_reset_events(r4j: Driver) -> None:
    """CircuitBreakerEventPublisherTest.shouldConsumeOnStateTransitionEvent and
    shouldConsumeOnResetEvent: a trip publishes CLOSED -> OPEN; a reset publishes
    OPEN -> CLOSED, and a reset of a CLOSED breaker CLOSED -> CLOSED (resilience4j: a reset
    event)."""
    r4j.control(Control.TRIP)
    r4j.control(Control.RESET)
    r4j.control(Control.RESET)
    events = r4j.backend.history(r4j.name)
    assert [(e.from_state, e.to_state) for e in events] == [
        (State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED), (State.CLOSED, State.CLOSED)]
    assert [e.epoch for e in events] == [1, 2, 3]


# -- SlidingTimeWindowMetricsTest ------------------------------------------------------------------


def test_window_counts_each_outcome(r4j: Driver) -> None:
    """SlidingTimeWindowMetricsTest.testRecordSuccess, testRecordError and
    testRecordSlowSuccess: a success, a failure, a success the caller says was slow (SLOW,
    however short): 3 calls, 1 failed, 1 slow. Durations are not summed (fusebox keeps no
    total or average duration: the job latency histogram has them)."""
    r4j.call(S, duration=0.1)
    r4j.call(F, duration=0.1)
    result = r4j.call(SLOW, duration=0.1)
    assert result.slow
    w = r4j.snapshot().window
    assert (w.calls, w.failures, w.slow) == (3, 1, 1)
    totals = r4j.snapshot().totals
    assert (totals["success"], totals["failure"], totals["slow"]) == (1, 1, 1)


def test_slow_call_percentage(r4j: Driver) -> None:
    """SlidingTimeWindowMetricsTest.testSlowCallsPercentage: a slow success, a slow failure and
    three fast successes: 40 % slow, 20 % failed."""
    r4j.call(S, duration=10)
    r4j.call(F, duration=10)
    r4j.calls(S, S, S, duration=0.1)
    w = r4j.snapshot().window
    assert (w.calls, w.failures, w.slow, w.slow_rate, w.failure_rate) == (5, 1, 2, 0.4, 0.2)


def test_window_slides_out_second_by_second(r4j: Driver) -> None:
    """SlidingTimeWindowMetricsTest.shouldClearSlidingTimeWindowMetrics: a 5 s window; calls at
    0, 0.1 and 0.8 s are all in it 4 s later and all gone 5 s after the first second began,
    a call then starts it afresh, and a call 5 s later finds that one gone too."""
    with_policy(r4j, window=5)
    r4j.call(F, duration=0.1)
    r4j.advance(0.1)
    r4j.call(S, duration=0.1)
    r4j.advance(0.7)
    r4j.call(F, duration=5)
    w = r4j.snapshot().window
    assert (w.calls, w.failures, w.slow) == (3, 2, 1)
    r4j.advance(4)
    assert r4j.snapshot().window.calls == 3
    r4j.advance(0.2)  # 5 s after the first call's second began: its bucket left
    assert r4j.snapshot().window.calls == 0
    r4j.advance(0.1)
    r4j.call(S, duration=0.1)
    assert r4j.snapshot().window.calls == 1
    r4j.advance(5)
    r4j.call(S, duration=0.1)
    assert r4j.snapshot().window.calls == 1
