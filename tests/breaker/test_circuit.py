"""The caller's surface (guard, decorator, admit/record) on the local store and on Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from breaker import (
    BreakerEvent,
    BreakerPolicy,
    Breakers,
    BreakerSettings,
    CallNotPermitted,
    InputError,
    Outcome,
    State,
)
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.connection import redis_client

POLICY = BreakerPolicy(minimum_calls=4, wait_in_open=0.3, permitted_calls_in_half_open=2,
                       call_timeout=0.5, max_wait_in_half_open=5.0, slow_call_duration=0.4)


@pytest.fixture(params=["local", "redis"])
def breakers(request: pytest.FixtureRequest) -> Iterator[Breakers]:
    if request.param == "local":
        b = Breakers(default_policy=POLICY)
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("key_prefix")
        settings = BreakerSettings(redis_url=url, key_prefix=prefix, refresh_interval=0.2)
        backend = RedisBackend(redis_client(url, settings.redis_timeout), Keyspace(prefix))
        b = Breakers(backend, settings=settings, default_policy=POLICY)
        assert b.wait_until_subscribed()
    yield b
    b.close()


def boom() -> None:
    raise RuntimeError("model crashed")


def settle(b: Breakers, until: State, timeout: float = 3.0) -> State:
    b.flush()
    deadline = time.monotonic() + timeout
    while b.get("ocr").state != until and time.monotonic() < deadline:
        time.sleep(0.005)
    return b.get("ocr").state


def test_guard_passes_results_and_exceptions_through(breakers: Breakers) -> None:
    with breakers.guard("ocr") as ticket:
        value = 7
    assert value == 7 and ticket.breaker == "ocr"
    with pytest.raises(RuntimeError, match="model crashed"):
        breakers.get("ocr").call(boom)
    breakers.flush()
    totals = breakers.get("ocr").snapshot().totals
    assert totals["success"] == 1 and totals["failure"] == 1


def test_failures_trip_and_open_rejects_before_running(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    for _ in range(4):
        with pytest.raises(RuntimeError):
            ocr.call(boom)
    assert settle(breakers, State.OPEN) == State.OPEN
    ran = []
    with pytest.raises(CallNotPermitted) as refused:
        ocr.call(lambda: ran.append(1))
    assert ran == []
    assert refused.value.state == State.OPEN and 0 < refused.value.retry_after <= 0.3
    assert "retry in" in str(refused.value)


def test_recovers_through_half_open(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ocr.trip()
    assert settle(breakers, State.OPEN) == State.OPEN
    time.sleep(0.35)
    assert ocr.call(lambda: "probe 1") == "probe 1"
    assert ocr.state == State.HALF_OPEN
    assert ocr.call(lambda: "probe 2") == "probe 2"
    assert settle(breakers, State.CLOSED) == State.CLOSED


def test_bad_input_never_trips(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    for _ in range(20):
        with pytest.raises(InputError):
            with ocr.guard():
                raise InputError("zero-byte image")
    breakers.flush()
    snap = ocr.snapshot()
    assert snap.state == State.CLOSED and snap.window.calls == 0 and snap.totals["ignored"] == 20


def test_a_call_past_its_timeout_counts_as_timeout(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    with ocr.guard():
        time.sleep(0.55)
    breakers.flush()
    totals = ocr.snapshot().totals
    assert totals["timeout"] == 1 and "success" not in totals


def test_decorator(breakers: Breakers) -> None:
    @breakers.get("ocr")
    def recognise(x: int) -> int:
        """docs survive"""
        return x * 2

    assert recognise(21) == 42
    assert recognise.__doc__ == "docs survive"


def test_explicit_admit_and_record_with_wait(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ticket = ocr.admit()
    result = ocr.record(ticket, Outcome.SUCCESS, 0.45, wait=True)
    assert result is not None and result.applied and result.slow
    with pytest.raises(ValueError, match="recorded on"):
        breakers.get("ner").record(ticket, Outcome.SUCCESS, 0.1)


def test_listeners_hear_transitions_and_a_broken_one_does_not_matter(breakers: Breakers) -> None:
    heard: list[BreakerEvent] = []
    breakers.add_listener(lambda e: 1 / 0)
    remove = breakers.add_listener(heard.append)
    breakers.get("ocr").force_open(reason="drill")
    deadline = time.monotonic() + 3
    while not heard and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [(e.to_state, e.reason) for e in heard] == [(State.FORCED_OPEN, "drill")]
    remove()
    breakers.get("ocr").reset()
    time.sleep(0.1)
    assert len(heard) == 1


def test_operator_states(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ocr.disable()
    for _ in range(10):
        with pytest.raises(RuntimeError):
            ocr.call(boom)
    assert settle(breakers, State.DISABLED) == State.DISABLED
    ocr.metrics_only()
    for _ in range(10):
        with pytest.raises(RuntimeError):
            ocr.call(boom)
    breakers.flush()
    snap = ocr.snapshot()
    assert snap.state == State.METRICS_ONLY and snap.window.failures == 10


def test_live_policy_change(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ocr.set_policy(POLICY.model_copy(update={"minimum_calls": 1}))
    assert ocr.policy.minimum_calls == 1
    with pytest.raises(RuntimeError):
        ocr.call(boom)
    assert settle(breakers, State.OPEN) == State.OPEN
    ocr.clear_policy()
    assert ocr.policy == POLICY


def test_invalid_names_are_refused_before_any_store_call(breakers: Breakers) -> None:
    with pytest.raises(ValueError, match="invalid breaker name"):
        breakers.get("ocr:*")


@pytest.mark.redis
def test_closed_admission_is_answered_from_pushed_state(redis_url: str, key_prefix: str) -> None:
    """After the first call, CLOSED admissions cost no round trip: Redis sees no command."""
    settings = BreakerSettings(redis_url=redis_url, key_prefix=key_prefix, refresh_interval=60)
    counting = redis_client(redis_url, 0.05)
    sent: list[str] = []
    original = counting.execute_command

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    counting.execute_command = spy  # type: ignore[method-assign]
    with Breakers(RedisBackend(counting, Keyspace(key_prefix)), settings=settings, default_policy=POLICY) as b:
        assert b.wait_until_subscribed()
        b.get("ocr").admit()  # first sight of the breaker: asks the store
        b.refresh()
        sent.clear()
        tickets = [b.get("ocr").admit() for _ in range(1000)]
    assert sent == []
    assert {t.state for t in tickets} == {State.CLOSED}
