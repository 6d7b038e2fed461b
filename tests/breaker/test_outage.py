"""Redis goes away mid-run: guarded calls keep returning, decided by the local breaker; the
process says it is degraded; when Redis is back, it rejoins the shared state."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from redis.exceptions import RedisError

from breaker import BreakerEvent, BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, State, StoreUnavailable
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POLICY = BreakerPolicy(minimum_calls=5, failure_rate_threshold=0.5, wait_in_open=30, call_timeout=1,
                       max_wait_in_half_open=5)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Caller:
    """A thread making guarded calls non-stop, keeping score of what came back."""

    def __init__(self, breakers: Breakers, fail: threading.Event) -> None:
        self.breakers, self.fail = breakers, fail
        self.results: Counter[str] = Counter()
        self.slowest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                with self.breakers.guard("ocr"):
                    if self.fail.is_set():
                        raise RuntimeError("model down")
                self.results["ok"] += 1
            except CallNotPermitted:
                self.results["rejected"] += 1
            except RuntimeError:
                self.results["failed"] += 1
            except RedisError as exc:  # must never happen
                self.results[f"redis error {exc!r}"] += 1
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                self.results[f"other {exc!r}"] += 1
            self.slowest = max(self.slowest, time.perf_counter() - started)
            time.sleep(0.002)

    def __enter__(self) -> Caller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def breakers(private_redis: RedisServer) -> Iterator[Breakers]:
    settings = BreakerSettings(redis_url=private_redis.url, key_prefix="outage", redis_timeout=0.05,
                               refresh_interval=0.2, reconnect_interval=0.1)
    b = Breakers.from_url(private_redis.url, settings=settings, default_policy=POLICY)
    assert b.wait_until_subscribed()
    yield b
    b.close()


def test_redis_killed_and_restarted(private_redis: RedisServer, breakers: Breakers) -> None:
    events: list[BreakerEvent] = []
    breakers.add_listener(events.append)
    fail = threading.Event()
    with Caller(breakers, fail) as caller:
        assert wait_for(lambda: caller.results["ok"] > 20)
        private_redis.kill()
        assert wait_for(lambda: breakers.degraded, 5)
        health = breakers.health()
        assert health.degraded and not health.shared and health.last_error
        before = caller.results["ok"]
        assert wait_for(lambda: caller.results["ok"] > before + 20)  # calls go on

        fail.set()  # the model breaks while Redis is down: the local breaker must trip
        assert wait_for(lambda: caller.results["rejected"] > 10)
        assert breakers.get("ocr").state == State.OPEN
        with pytest.raises(StoreUnavailable):
            breakers.get("ocr").reset()  # operator actions need the shared store
        fail.clear()

        failed_while_down = caller.results["failed"]
        private_redis.start()
        assert wait_for(lambda: not breakers.degraded, 10)
        assert wait_for(lambda: breakers.cache.subscribed, 5)
        # What the process learned alone was handed back: the restarted (empty) store holds
        # the failures, and the local trip became the fleet's.
        ocr = breakers.get("ocr")
        assert wait_for(lambda: ocr.state == State.OPEN, 5)
        snap = ocr.snapshot()
        assert snap.totals["failure"] >= failed_while_down >= POLICY.minimum_calls
        assert snap.totals.get("merged", 0) >= failed_while_down
        trip = [e for e in events if e.kind == "transition" and not e.local and e.to_state == State.OPEN]
        assert trip and "tripped locally while the store was unreachable" in trip[-1].reason
        ocr.reset(reason="model fixed")
        mark = caller.results["ok"]
        assert wait_for(lambda: caller.results["ok"] > mark + 20)
    assert all(k in ("ok", "rejected", "failed") for k in caller.results), caller.results
    breakers.flush()
    snap = breakers.get("ocr").snapshot()
    assert not snap.local and snap.state == State.CLOSED and snap.totals["success"] > 0
    store_events = [e.reason.split(" ")[0].rstrip(":") for e in events if e.kind == "store"]
    assert store_events == ["lost", "regained"]
    local_trips = [e for e in events if e.kind == "transition" and e.local and e.to_state == State.OPEN]
    assert local_trips, "the local breaker should have tripped on its own"


def test_frozen_redis_costs_a_timeout_not_a_hang(private_redis: RedisServer, breakers: Breakers) -> None:
    fail = threading.Event()
    with Caller(breakers, fail) as caller:
        assert wait_for(lambda: caller.results["ok"] > 20)
        private_redis.freeze()  # connections stay open, nothing answers
        assert wait_for(lambda: breakers.degraded, 5)
        before = caller.results["ok"]
        assert wait_for(lambda: caller.results["ok"] > before + 50)
        private_redis.resume()
        assert wait_for(lambda: not breakers.degraded, 10)
    assert set(caller.results) == {"ok"}, caller.results
    # No guarded call waited more than a few store timeouts, although Redis never answered.
    assert caller.slowest < 1.0, caller.slowest


def test_redis_down_from_the_start(private_redis: RedisServer) -> None:
    url = private_redis.url
    private_redis.stop()
    settings = BreakerSettings(redis_url=url, key_prefix="outage", reconnect_interval=0.1)
    with Breakers.from_url(url, settings=settings, default_policy=POLICY) as b:
        assert b.get("ocr").call(lambda: 5) == 5
        assert b.degraded
        private_redis.start()
        assert wait_for(lambda: not b.degraded, 10)
        assert b.get("ocr").call(lambda: 6) == 6
        b.flush()
        # Both calls reach the shared totals: the one decided alone was handed back.
        assert b.get("ocr").snapshot().totals["success"] == 2


def test_losing_redis_while_open_keeps_the_model_protected(private_redis: RedisServer, breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ocr.trip(reason="model sick")
    assert wait_for(lambda: ocr.state == State.OPEN)
    private_redis.kill()
    assert wait_for(lambda: breakers.degraded, 5)
    refused = 0
    for _ in range(50):
        try:
            ocr.call(lambda: None)
        except CallNotPermitted as exc:
            refused += 1
            assert exc.retry_after is not None and 25 < exc.retry_after <= 30
    assert refused == 50  # the local breaker was seeded OPEN with what was left of the wait
