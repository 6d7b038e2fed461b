"""resilience4j's own state-machine tests, ported: fusebox speaks resilience4j's
vocabulary, so where it does not say otherwise it behaves like resilience4j.

Each test is one time-based scenario of resilience4j's test suite (``CircuitBreakerStateMachineTest``,
``SlidingTimeWindowMetricsTest``, ``CircuitBreakerEventPublisherTest``,
``CircuitBreakerExceptionHandlingTest``, ``CircuitBreakerAutoTransitionStateMachineTest``),
written anew from what it checks; its docstring names the Java test method. Every test runs
on the in-memory machine and on the Redis scripts with a manual clock. Where fusebox
differs on purpose the test asserts fusebox's behaviour and says why; the full table is the
"Conformance with resilience4j" section of docs/breaker.md.

The policy is resilience4j's test configuration: failure and slow-call rate thresholds 50 %,
slow calls from 4 s, a 20 s time-based window judged from 5 calls, 5 s in OPEN, 4 probes,
1 s at most in HALF_OPEN.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.state import Control, Outcome, State
from tests.support.clock import ManualClock
from tests.support.driver import Driver

S, F, T, SLOW, I = Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.SLOW, Outcome.IGNORED

R4J_POLICY = BreakerPolicy(
    minimum_calls=5,
    failure_rate_threshold=0.5,
    slow_call_duration=4.0,
    slow_call_rate_threshold=0.5,
    window=20,
    wait_in_open=5.0,
    permitted_calls_in_half_open=4,
    max_wait_in_half_open=1.0,
    call_timeout=0.5,
)


@pytest.fixture
def r4j(backend_kind: str, clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Driver]:
    """resilience4j's test breaker on either backend, time stepped by hand."""
    if backend_kind == "memory":
        yield Driver(InMemoryBackend(clock=clock), clock, R4J_POLICY)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("key_prefix")
    yield Driver(RedisBackend(client, Keyspace(prefix), clock=clock), clock, R4J_POLICY)


def transitions(d: Driver) -> list[tuple[State | None, State | None]]:
    return [(e.from_state, e.to_state) for e in d.backend.history(d.name) if e.kind == "transition"]


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


def test_reset_of_a_closed_breaker_empties_the_window(r4j: Driver) -> None:
    """CircuitBreakerStateMachineTest.shouldResetClosedState: a reset always acts (it empties
    the window), so it is published even on a CLOSED breaker, like resilience4j's reset event."""
    r4j.calls(S, S)
    assert r4j.snapshot().window.calls == 2
    r4j.control(Control.RESET)
    snap = r4j.snapshot()
    assert (snap.state, snap.window.calls, snap.epoch) == (State.CLOSED, 0, 1)
    assert transitions(r4j) == [(State.CLOSED, State.CLOSED)]


# -- every refusal counted ---------------------------------------------------------------------


def fleet_metric(redis_url: str, prefix: str, metric: str, labels: dict[str, str]) -> float | None:
    """One sample of the fleet's Prometheus metrics as ``fusebox serve`` exposes them."""
    from api.metrics import FuseboxCollector
    from workers.settings import Settings
    from tests.support.processes import make_breakers

    breakers = make_breakers(redis_url, prefix)
    try:
        for family in FuseboxCollector(breakers, breakers.shared.client, Settings(key_prefix=prefix)).collect():
            for sample in family.samples:
                if sample.name == metric and sample.labels == labels:
                    return float(sample.value)
    finally:
        breakers.close()
    return None


@pytest.mark.redis
def test_every_refusal_counted_from_four_processes(redis_url: str, key_prefix: str) -> None:
    """CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsForcedOpen
    (and CircuitBreakerEventPublisherTest.shouldConsumeCallNotPermittedEvent): every refused
    call is counted. Four processes with their subscribers running refuse 25 calls each from
    their pushed state (no round trip); the fleet's ``fusebox_breaker_rejected_total`` reads 100."""
    from breaker.backends.redis import RedisBackend as Backend
    from breaker.connection import redis_client
    from tests.support.processes import SPAWN, refuse_from_cache

    name = "r4j-refused"
    backend = Backend(redis_client(redis_url, 1.0), Keyspace(key_prefix))
    backend.control(name, BreakerPolicy(), Control.FORCE_OPEN, "test")
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=refuse_from_cache, args=(redis_url, key_prefix, name, 25, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    answers = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert answers == [{"refused": 25, "from_cache": True}] * 4
    assert backend.snapshot(name, BreakerPolicy()).totals.get("rejected") == 100
    assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_rejected_total", {"model": name}) == 100


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


@pytest.mark.redis
def test_not_judged_has_no_ratio_sample(redis_url: str, key_prefix: str) -> None:
    """The Prometheus side of "not judged": no ``fusebox_breaker_failure_ratio`` sample and
    ``fusebox_breaker_window_judged`` 0 below the minimum; the ratio and 1 from it on."""
    from tests.support.processes import make_breakers

    breakers = make_breakers(redis_url, key_prefix, R4J_POLICY)
    breaker = breakers.get("r4j-judged")
    try:
        for _ in range(2):
            breaker.record(breaker.admit(), F, 0.01, wait=True)
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_window_judged", {"model": "r4j-judged"}) == 0
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_failure_ratio", {"model": "r4j-judged"}) is None
        for _ in range(3):
            breaker.record(breaker.admit(), S, 0.01, wait=True)
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_window_judged", {"model": "r4j-judged"}) == 1
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_failure_ratio", {"model": "r4j-judged"}) == 0.4
    finally:
        breakers.close()
