"""What the ported resilience4j scenarios share (tests/breaker/test_resilience4j*.py):
resilience4j's test configuration as a policy, and small helpers."""

from __future__ import annotations

from breaker.policy import BreakerPolicy
from breaker.state import Control, Outcome, State
from tests.support.driver import Driver

S, F, T, SLOW, I = Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.SLOW, Outcome.IGNORED

#: resilience4j's CircuitBreakerStateMachineTest configuration: failure and slow-call rate
#: thresholds 50 %, slow calls from 4 s, a 20 s time-based window judged from 5 calls, 5 s
#: in OPEN, 4 probes, 1 s at most in HALF_OPEN.
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


def transitions(d: Driver) -> list[tuple[State | None, State | None]]:
    return [(e.from_state, e.to_state) for e in d.backend.history(d.name) if e.kind == "transition"]


def would_trips(d: Driver) -> list[str]:
    return [e.reason for e in d.backend.history(d.name) if e.kind == "would_trip"]


def with_policy(d: Driver, **changes: object) -> Driver:
    """The breaker created with another policy (before its first call: the store adopts
    its first caller's policy)."""
    d.policy = BreakerPolicy.model_validate({**d.policy.model_dump(), **changes})
    return d


def to_half_open(d: Driver) -> None:
    """Trips the breaker and waits out OPEN (the next admission moves it to HALF_OPEN)."""
    d.control(Control.TRIP)
    d.advance(d.backend_policy().wait_in_open)


def fleet_metric(redis_url: str, prefix: str, metric: str, labels: dict[str, str]) -> float | None:
    """One sample of the fleet's Prometheus metrics as ``fusebox serve`` exposes them."""
    from api.metrics import FuseboxCollector
    from tests.support.processes import make_breakers
    from workers.settings import Settings

    breakers = make_breakers(redis_url, prefix)
    try:
        for family in FuseboxCollector(breakers, breakers.shared.client, Settings(key_prefix=prefix)).collect():
            for sample in family.samples:
                if sample.name == metric and sample.labels == labels:
                    return float(sample.value)
    finally:
        breakers.close()
    return None
