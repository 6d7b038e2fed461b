"""The counting and state invariants of docs/breaker.md ("Invariants"), each tried the way
issue 22 found it broken: a store that comes back behind, a hand-back after the breaker
moved on, a fork that copies a tally or a queue, an idempotency horizon counted in writes.
(The probe limit is in test_scenarios.py: it runs on both backends.)"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from breaker import BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, Outcome, State
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.state import Control
from breaker.tally import LocalTally
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PREFIX = "inv"
POLICY = BreakerPolicy(minimum_calls=5, failure_rate_threshold=0.5, wait_in_open=30, call_timeout=1,
                       max_wait_in_half_open=5)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def make(url: str, reconnect: float = 0.1) -> Breakers:
    settings = BreakerSettings(redis_url=url, key_prefix=PREFIX, redis_timeout=0.05, refresh_interval=0.2,
                               reconnect_interval=reconnect)
    return Breakers.from_url(url, settings=settings, default_policy=POLICY)


def operator(url: str) -> RedisBackend:
    return RedisBackend(redis.Redis.from_url(url, socket_timeout=2), Keyspace(PREFIX))


def failing_call(b: Breakers) -> bool:
    """One guarded call of a model that fails; True when it reached the model."""
    try:
        with b.guard("m"):
            raise RuntimeError("model down")
    except CallNotPermitted:
        return False
    except RuntimeError:
        return True


def rejoined(b: Breakers) -> bool:
    return not b.degraded and b.cache.fresh


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


def test_a_store_that_comes_back_behind_is_believed_and_trips(server: RedisServer) -> None:
    """Finding 1: Redis restarted from a snapshot that misses the last transitions (same
    incarnation, lower epoch). The process that saw them must follow the store, not keep
    admitting on its lost epoch (every outcome then stale, the breaker unable to trip)."""
    b = make(server.url)
    ops = operator(server.url)
    try:
        assert b.wait_until_subscribed()
        b.get("m").admit()  # creates the breaker (epoch 0)
        redis.Redis.from_url(server.url).save()  # the snapshot the store will come back from
        for _ in range(2):
            ops.control("m", POLICY, Control.TRIP, "op", "t")
            ops.control("m", POLICY, Control.RESET, "op", "t")
        assert wait_for(lambda: (v := b.cache.get("m")) is not None and v.epoch == 4)
        server.kill()
        server.start()  # loads the snapshot: epoch 0
        assert wait_for(lambda: rejoined(b) and b.known_view("m").epoch == 0, 15)  # type: ignore[union-attr]
        reached = sum(failing_call(b) for _ in range(40) if not time.sleep(0.01))
        b.flush()
        snap = ops.snapshot("m", POLICY)
        assert snap.state == State.OPEN, snap
        assert reached <= 2 * POLICY.minimum_calls, f"{reached} of 40 failing calls reached the model"
        assert snap.totals.get("stale", 0) <= 2
    finally:
        b.close()


def test_a_hand_back_does_not_judge_a_breaker_that_moved_on(tmp_path: object) -> None:
    """Finding 2: failures admitted on epoch 0 while the store was away are handed back after
    the breaker tripped, recovered and recorded successes (epoch 2): they reach the totals,
    never the recovered window."""
    with RedisServer(persistent=True) as server:
        b = make(server.url, reconnect=2.0)
        ops = operator(server.url)
        try:
            assert b.wait_until_subscribed()
            b.get("m").admit()
            server.kill()
            assert wait_for(lambda: b.degraded)
            assert sum(failing_call(b) for _ in range(5)) == 5  # the local breaker trips at 5
            server.start()  # from its AOF: epoch 0, then the fleet moves on without us
            ops.control("m", POLICY, Control.TRIP, "op", "t")
            ops.control("m", POLICY, Control.RESET, "op", "t")
            for _ in range(4):
                admission = ops.admit("m", POLICY, "other")
                assert admission.ticket is not None
                from breaker.backend import RecordRequest

                ops.record(RecordRequest("m", POLICY, admission.ticket, Outcome.SUCCESS, 0.01, "other"))
            assert wait_for(lambda: rejoined(b) and b.health().tallied_outcomes == 0, 15)
            snap = ops.snapshot("m", POLICY)
            assert snap.state == State.CLOSED, snap
            assert snap.epoch == 2
            assert snap.totals["failure"] == 5  # counted once, in the totals
            assert snap.window.calls == 4
        finally:
            b.close()


def _in_child(body: Callable[[], int]) -> int:
    """Runs ``body`` in a forked child (as Celery's prefork pool does); its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_does_not_hand_back_its_parents_tally(server: RedisServer) -> None:
    """Finding 3: a child forked while the parent holds a local tally must not hand it back
    too (3 failures became 6 and tripped the fleet)."""
    b = make(server.url)
    ops = operator(server.url)
    try:
        assert b.wait_until_subscribed()
        b.get("m").admit()
        server.kill()
        assert wait_for(lambda: b.degraded)
        assert sum(failing_call(b) for _ in range(3)) == 3
        assert b.health().tallied_outcomes == 3

        def child() -> int:
            assert wait_for(lambda: b.known_state("m") is not None and rejoined(b), 15)
            with b.guard("m"):
                pass
            b.flush()
            b.close()
            return 0

        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 99
            try:
                code = child()
            finally:
                os._exit(code)
        server.start()  # empty: both rejoin and hand back what they hold
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert wait_for(lambda: rejoined(b) and b.health().tallied_outcomes == 0, 15)
        totals = ops.snapshot("m", POLICY).totals
        assert totals.get("failure", 0) == 3, totals
        assert totals.get("success", 0) == 1, totals
    finally:
        b.close()


def test_a_forked_child_does_not_send_its_parents_queue(server: RedisServer) -> None:
    """Finding 3: outcomes queued for write-behind at the fork belong to the parent; a child
    that flushes at shutdown must not send them a second time."""
    b = make(server.url)
    ops = operator(server.url)
    try:
        assert b.wait_until_subscribed()
        b.recorder.stop()  # the queue fills and waits, as it does between two sends
        breaker = b.get("m")
        for _ in range(10):
            breaker.record(breaker.admit(), Outcome.SUCCESS, 0.01)
        assert b.recorder.pending == 10

        def child() -> int:
            b.flush()
            b.close()
            return 0

        assert _in_child(child) == 0
        b.recorder.start()
        assert b.flush()
        assert ops.snapshot("m", POLICY).totals.get("success", 0) == 10
    finally:
        b.close()


def test_a_forked_child_keeps_an_operators_forced_open_while_the_store_is_down(server: RedisServer) -> None:
    """Finding 3: a child forgot its parent's view before it could seed its local breaker:
    with the store down, a FORCED_OPEN breaker admitted calls in the child."""
    b = make(server.url)
    try:
        assert b.wait_until_subscribed()
        b.get("m").force_open("maintenance")
        assert wait_for(lambda: b.known_state("m") == State.FORCED_OPEN)
        server.kill()

        def child() -> int:
            try:
                with b.guard("m"):
                    return 1  # admitted: the operator's decision was lost
            except CallNotPermitted as exc:
                return 0 if exc.state == State.FORCED_OPEN else 2

        assert _in_child(child) == 0
    finally:
        b.close()


def test_exactly_once_holds_for_the_whole_horizon_not_a_count_of_writes(redis_url: str, key_prefix: str) -> None:
    """Finding 4: the store remembered only the last 20 000 write ids; a busy fleet makes that
    many in well under a minute, so a process away a little longer counted a write twice."""
    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(client, Keyspace(key_prefix))
    from breaker.backend import RecordRequest

    def write() -> str:
        ticket = backend.admit("m", POLICY, "t").ticket
        assert ticket is not None
        batch = os.urandom(8).hex()
        backend._call("record", "m", backend._record_args(
            [RecordRequest("m", POLICY, ticket, Outcome.SUCCESS, 0.01, "t")], batch))
        return batch

    mine = write()  # its answer is lost; the process asks about it later
    applied = backend.keys.breaker("m")[6]
    now = int(time.time() * 1000)
    client.zadd(applied, {f"other-{i}": now for i in range(25_000)})  # other processes' writes, seconds later
    write()
    assert backend.applied_batches("m", [mine]) == {mine}


def test_a_write_older_than_the_horizon_is_reported_lost_not_counted_twice() -> None:
    """Beyond the horizon the store cannot answer "did it run?": such outcomes are dropped
    and reported (``health().lost_outcomes``), never handed back a second time."""
    tally = LocalTally()
    tally.add("m", 1_000, Outcome.FAILURE, False, batch="old", basis=(1, 0))
    tally.add("m", 600_000, Outcome.FAILURE, False, batch="new", basis=(1, 0))
    t = tally.take(("m", (1, 0)))
    assert t is not None
    lost = t.settle(applied=set(), now_ms=650_000)
    assert lost == 1  # "old": 649 s ago, the store may have forgotten it
    assert t.totals["failure"] == 1  # "new": not applied, handed back
