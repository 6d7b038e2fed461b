"""The shared breaker when Redis is only partly sick, with real processes on a real Redis
that the tests break: a store that answers PING but refuses the scripts (out of memory,
a read-only replica), a bad stored policy, a 300 ms blip, a subscription that dies without
a sound, outcomes across a refusal and an outage, and an operator changing the policy in
HALF_OPEN. Each asserts what a user needs, not that something ran."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from api.services import free_port
from breaker import BreakerEvent, BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, Control, Outcome, State
from breaker.backend import RecordRequest
from breaker.backends.memory import InMemoryBackend
from breaker.failsafe import StoreFault
from tests.support.processes import SPAWN, guarded_loop
from tests.support.waiting import wait_for
from tests.support.proxy import SilentProxy
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POLICY = BreakerPolicy(minimum_calls=10, failure_rate_threshold=0.5, wait_in_open=60, call_timeout=1,
                       max_wait_in_half_open=5, window=60)


def settings(url: str, prefix: str, timeout: float = 0.05) -> BreakerSettings:
    """Tests about a failing store use the real 50 ms timeout; the others a generous one,
    so that a loaded machine cannot turn them into fail-safe tests."""
    return BreakerSettings(redis_url=url, key_prefix=prefix, redis_timeout=timeout, refresh_interval=0.2,
                           reconnect_interval=0.1)


class Callers:
    """Processes running :func:`guarded_loop` against one breaker called ``model``."""

    def __init__(self, url: str, prefix: str, tmp: Path, n: int, policy: BreakerPolicy = POLICY) -> None:
        self.control = tmp
        self.results: Any = SPAWN.Queue()
        self.procs = [SPAWN.Process(target=guarded_loop, args=(url, prefix, policy.model_dump_json(), str(tmp),
                                                              self.results)) for _ in range(n)]

    def progress(self) -> list[dict[str, Any]]:
        """Each process's latest counts (written every 0.2 s)."""
        found = []
        for path in self.control.glob("status-*.json"):
            try:
                found.append(json.loads(path.read_text()))
            except ValueError:
                pass
        return found

    def all(self, predicate: Callable[[dict[str, Any]], bool]) -> bool:
        reports = self.progress()
        return len(reports) == len(self.procs) and all(predicate(r) for r in reports)

    def fail(self, on: bool = True) -> None:
        path = self.control / "fail"
        path.touch() if on else path.unlink(missing_ok=True)

    def __enter__(self) -> Callers:
        for p in self.procs:
            p.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        (self.control / "stop").touch()
        reports = [json.loads(self.results.get(timeout=30)) for _ in self.procs]
        for p in self.procs:
            p.join(10)
        return reports

    def __exit__(self, *exc: object) -> None:
        (self.control / "stop").touch()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def refuse(server: redis.Redis, how: str, dead_port: int) -> None:
    if how == "oom":
        server.config_set("maxmemory-policy", "noeviction")
        server.config_set("maxmemory", "1")
    else:  # a master turned replica (as after a failover): answers, refuses every write
        server.replicaof("127.0.0.1", dead_port)


def accept(server: redis.Redis, how: str) -> None:
    if how == "oom":
        server.config_set("maxmemory", "0")
    else:
        server.replicaof("NO", "ONE")


@pytest.mark.parametrize("how", ["oom", "readonly"])
def test_a_store_that_refuses_the_scripts_keeps_the_model_protected(
    private_redis: RedisServer, tmp_path: Path, how: str
) -> None:
    """PING answers, every script is refused. Before: each process flapped between shared
    and local dozens of times a second and a 100 %-failing model was called ~250 times per
    process with nothing rejected. Now: each process decides locally from the first
    refusal, its local breaker trips after minimum_calls, it never flaps, and when the
    store accepts writes again every failure reaches the shared window, which trips."""
    server = redis.Redis.from_url(private_redis.url)
    refuse(server, how, free_port())
    with Callers(private_redis.url, "refuse", tmp_path, n=2) as callers:
        callers.fail()
        # Both processes running against the refusing store, long enough to have flapped
        # many times before: each has tripped locally and turned 100+ calls away since.
        assert wait_for(lambda: callers.all(lambda r: r["rejected"] > 300), 60), callers.progress()
        accept(server, how)
        with Breakers.from_url(private_redis.url, settings=settings(private_redis.url, "refuse"),
                               default_policy=POLICY, subscribe=False) as reader:
            shared = reader.get("model")
            # Both processes rejoin (after their backoff) and hand back their tallies.
            assert wait_for(lambda: shared.snapshot().totals.get("merged", 0) >= 2 * POLICY.minimum_calls, 20)
            reports = callers.stop()
            snap = shared.snapshot()
    for report in reports:
        assert report["errors"] == 0, report["errors_seen"]
        # The local breaker tripped at minimum_calls and held: the model was spared.
        assert report["model_calls"] <= POLICY.minimum_calls + 2, report
        assert report["rejected"] > 100, report
        # One loss, one rejoin: no flapping between shared and local.
        assert report["store_events"] == ["lost", "regained"], report["store_events"]
    assert snap.state == State.OPEN
    # No failure was lost: the shared totals hold every call that reached the model.
    assert snap.totals["failure"] == sum(r["model_failures"] for r in reports)


def test_refusal_is_reported_as_such(private_redis: RedisServer) -> None:
    server = redis.Redis.from_url(private_redis.url)
    with Breakers.from_url(private_redis.url, settings=settings(private_redis.url, "kind"),
                           default_policy=POLICY) as b:
        assert b.wait_until_subscribed()
        refuse(server, "oom", 0)
        with b.guard("model"):
            pass
        b.flush()
        # A CLOSED breaker admits from the cache; the write of its outcome is refused.
        assert wait_for(lambda: b.degraded, 5)
        health = b.health()
        assert health.fault == StoreFault.REFUSING and "maxmemory" in (health.last_error or "")
        time.sleep(1.0)
        assert b.degraded, "a store that still refuses writes must not be rejoined on a PING"
        accept(server, "oom")
        assert wait_for(lambda: not b.degraded, 10)
        assert b.health().fault is None


def test_a_bad_stored_policy_never_wedges_half_open(redis_url: str, key_prefix: str) -> None:
    """A stored policy missing a field used to pass Python's check and fail record.lua in
    HALF_OPEN only: the breaker admitted calls and never decided. The scripts now refuse
    such a policy, judge with the fleet default, and say so."""
    policy = POLICY.model_copy(update={"wait_in_open": 0.2, "permitted_calls_in_half_open": 3})
    with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix, 1.0), default_policy=policy) as b:
        assert b.wait_until_subscribed()
        model = b.get("model")
        model.trip(reason="drill")
        fields = policy.to_redis()
        del fields["max_wait_in_half_open"]
        db = redis.Redis.from_url(redis_url)
        db.hset(f"{key_prefix}:breaker:model:policy", mapping=fields)
        time.sleep(0.3)
        admitted_in_half_open = 0
        for _ in range(50):
            try:
                with model.guard() as ticket:
                    if ticket.state == State.HALF_OPEN:
                        admitted_in_half_open += 1
            except CallNotPermitted:
                pass
            b.flush()
            if model.snapshot().state == State.CLOSED:
                break
        assert model.snapshot().state == State.CLOSED
        assert admitted_in_half_open == 3
        assert "max_wait_in_half_open" in b.health().policy_problems.get("model", "")


def test_a_blip_heals_the_subscription_by_itself(private_redis: RedisServer) -> None:
    """A 300 ms CLIENT PAUSE used to leave the process unsubscribed for good, every
    admission a round trip from then on."""
    with Breakers.from_url(private_redis.url, settings=settings(private_redis.url, "blip"),
                           default_policy=POLICY) as b:
        assert b.wait_until_subscribed()
        model = b.get("model")
        stop = threading.Event()

        def call() -> None:
            while not stop.is_set():
                try:
                    with model.guard():
                        pass
                except CallNotPermitted:
                    pass
                time.sleep(0.001)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        redis.Redis.from_url(private_redis.url).client_pause(300, all=True)
        assert wait_for(lambda: b.degraded or not b.cache.fresh, 2)
        time.sleep(0.3)
        # Back within the rejoin wait plus a resubscription (about a second); the limit here
        # is loose because the machine is shared: what matters is that it heals by itself.
        assert wait_for(lambda: not b.degraded and b.cache.subscribed and b.cache.fresh, 6)
        before = b.store_admissions
        time.sleep(0.3)
        stop.set()
        caller.join(2)
        # Admissions are back on the pushed state: (almost) none asks the store any more.
        assert b.store_admissions - before <= 2


def test_a_silently_dead_subscription_is_noticed_and_replaced(redis_url: str, key_prefix: str) -> None:
    """A proxy that stops forwarding on the subscription: no error, no message. Before,
    health said subscribed and the process never heard a trip again."""
    kwargs = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    host, port = kwargs["host"], kwargs["port"]
    with SilentProxy((host, port)) as proxy, Breakers.from_url(
        proxy.url, settings=settings(proxy.url, key_prefix, 1.0), default_policy=POLICY
    ) as b:
        assert b.wait_until_subscribed()
        heard: list[BreakerEvent] = []
        b.add_listener(lambda e: heard.append(e) if e.kind == "transition" else None)
        assert proxy.silence_subscriptions() == 1
        # Noticed by the ping on the subscription: within ping_interval + ping_timeout (2 s)
        # of silence by design; the wall-clock limit here is loose (a loaded machine).
        subscriber = b._subscriber
        assert subscriber.ping_interval + subscriber.ping_timeout <= 2.0
        assert wait_for(lambda: subscriber.dead_subscriptions >= 1, 6)
        # It subscribes again on a new connection, and hears what happens next.
        assert wait_for(lambda: b.cache.subscribed, 5)
        with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix, 1.0), default_policy=POLICY) as op:
            op.get("model").trip(reason="drill")
        assert wait_for(lambda: any(e.to_state == State.OPEN for e in heard), 3)
        silence = b.health().subscription_silence
        assert silence is not None and silence < 2.0


def test_no_outcome_is_lost_across_a_blip_a_refusal_and_an_outage(private_redis: RedisServer) -> None:
    """Shared counts after rejoin = calls made, whatever the store went through."""
    never_trips = BreakerPolicy(minimum_calls=1_000_000, call_timeout=1, max_wait_in_half_open=5)
    server = redis.Redis.from_url(private_redis.url)
    with Breakers.from_url(private_redis.url, settings=settings(private_redis.url, "lost"),
                           default_policy=never_trips) as b:
        assert b.wait_until_subscribed()
        model = b.get("model")
        calls = 0
        stop = threading.Event()

        def call() -> None:
            nonlocal calls
            while not stop.is_set():
                with model.guard():
                    calls += 1
                time.sleep(0.001)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        time.sleep(0.5)
        server.client_pause(300, all=True)  # a blip
        time.sleep(1.0)
        refuse(server, "oom", 0)  # a refusal period
        assert wait_for(lambda: b.degraded, 5)
        time.sleep(1.0)
        accept(server, "oom")
        assert wait_for(lambda: not b.degraded, 10)
        private_redis.freeze()  # a total outage (the data survives it)
        assert wait_for(lambda: b.degraded, 5)
        time.sleep(1.0)
        private_redis.resume()
        assert wait_for(lambda: not b.degraded, 10)
        time.sleep(0.3)
        stop.set()
        caller.join(5)
        assert b.flush(10)
        assert wait_for(lambda: b.health().tallied_outcomes == 0, 5)
        snap = model.snapshot()
        assert b.health().losses >= 2
    assert snap.totals["success"] == calls, (snap.totals, calls)


@pytest.mark.parametrize("reported, lowered_to", [(2, 2), (2, 1)])
def test_lowering_permitted_probes_in_half_open_decides_at_once(
    redis_url: str, key_prefix: str, reported: int, lowered_to: int
) -> None:
    """The decision used to come only with an outcome: lowering permitted_calls_in_half_open
    to or below the probes already reported wedged the breaker in HALF_OPEN for good."""
    policy = POLICY.model_copy(update={"wait_in_open": 0.1, "permitted_calls_in_half_open": 3})
    with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix, 1.0), default_policy=policy) as b:
        model = b.get("model")
        model.trip(reason="drill")
        time.sleep(0.15)
        for _ in range(reported):
            model.record(model.admit(), Outcome.SUCCESS, 0.01, wait=True)
        assert model.snapshot().state == State.HALF_OPEN
        model.set_policy(policy.model_copy(update={"permitted_calls_in_half_open": lowered_to}))
        snap = model.snapshot()
        assert snap.state == State.CLOSED, snap
        assert wait_for(lambda: model.state == State.CLOSED, 3)


def test_lowering_permitted_probes_decides_on_the_local_breaker_too() -> None:
    backend = InMemoryBackend()
    policy = POLICY.model_copy(update={"wait_in_open": 0.0, "permitted_calls_in_half_open": 3})
    backend.control("m", policy, Control.TRIP, "t")
    for _ in range(2):
        admission = backend.admit("m", policy, "t")
        assert admission.ticket is not None
        backend.record(RecordRequest("m", policy, admission.ticket, Outcome.FAILURE, 0.01, "t"))
    backend.set_policy("m", policy.model_copy(update={"permitted_calls_in_half_open": 2}), "op")
    assert backend.snapshot("m", policy).state == State.OPEN  # 2 of 2 failed: open again
