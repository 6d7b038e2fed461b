"""The resilience4j scenarios that need a fleet: refusals counted across processes and an
outage, "not judged" on the metrics endpoint, METRICS_ONLY's would-trip alert and counter,
and ``fusebox breaker what-if`` on the Redis store.

Each test is one time-based scenario of resilience4j's own tests, written anew from what it
checks; its docstring names the Java test method. The full table (scenario, resilience4j,
fusebox, why) is the "Conformance with resilience4j" section of docs/breaker.md. The
policy is resilience4j's test configuration (tests/support/r4j.py).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext

import pytest

from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.state import Control, State
from tests.support.r4j import F, R4J_POLICY, S, fleet_metric
from tests.support.redis_server import RedisServer


# -- every refusal counted ---------------------------------------------------------------------


@pytest.mark.redis
def test_every_refusal_counted_from_four_processes(redis_url: str, key_prefix: str) -> None:
    """CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsForcedOpen
    (and CircuitBreakerEventPublisherTest.shouldConsumeCallNotPermittedEvent): every refused
    call is counted. Four processes with their subscribers running refuse 25 calls each from
    their pushed state (no round trip); the fleet's ``fusebox_breaker_rejected_total`` reads 100."""
    from breaker.connection import redis_client
    from tests.support.processes import SPAWN, refuse_from_cache

    name = "r4j-refused"
    backend = RedisBackend(redis_client(redis_url, 1.0), Keyspace(key_prefix))
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


@pytest.mark.redis
def test_shadow_mode_event_alert_and_counter_once_per_crossing(redis_url: str, key_prefix: str) -> None:
    """A METRICS_ONLY breaker whose model fails above the threshold, in a process with its
    subscriber running: every call is admitted, and exactly one would-trip event reaches the
    listeners, one alert reaches the webhook (the alert service's path) and
    ``fusebox_breaker_would_trip_total{reason="failure_rate"}`` reads 1, per crossing."""
    from api.alerts import AlertSender
    from tests.api.test_alerts import Receiver
    from tests.support.fleet import wait_for
    from tests.support.processes import make_breakers
    from workers.settings import Webhook

    receiver = Receiver()
    breakers = make_breakers(redis_url, key_prefix, R4J_POLICY)
    alerts = AlertSender([Webhook(url=receiver.url("/generic"))], breakers.shared.client, key_prefix,
                         backoff=0.05).start()
    heard: list[str] = []
    try:
        assert breakers.wait_until_subscribed(10)
        breakers.add_listener(alerts)
        breakers.add_listener(lambda e: heard.append(e.reason) if e.kind == "would_trip" else None)
        breaker = breakers.get("r4j-shadow")
        breaker.metrics_only(reason="try a stricter policy")
        admitted = 0
        for outcome in [F] * 8 + [S] * 12 + [F] * 8:  # above at 5, below from 17, above again at 24 (12 of 24)
            with pytest.raises(RuntimeError) if outcome is F else nullcontext():
                with breaker.guard():
                    admitted += 1
                    if outcome is F:
                        raise RuntimeError("model failed")
            breakers.flush()
        assert admitted == 28 and breaker.snapshot().state == State.METRICS_ONLY
        def shadow_alerts() -> list[dict]:
            return [b for b in receiver.bodies.get("/generic", []) if b["event"]["kind"] == "would_trip"]

        wait_for(lambda: len(heard) == 2 and len(shadow_alerts()) == 2, 10)
        wait_for(lambda: False, 0.3)  # time for a duplicate to show up, if there were one
        assert heard == ["would trip: window failure rate 100.0% >= 50.0% over 5 calls",
                         "would trip: window failure rate 50.0% >= 50.0% over 24 calls"]
        assert sorted(b["text"] for b in shadow_alerts()) == sorted(
            f"fusebox breaker r4j-shadow: {reason} (metrics only: no call stopped)" for reason in heard)
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_would_trip_total",
                            {"model": "r4j-shadow", "reason": "failure_rate"}) == 2
        assert fleet_metric(redis_url, key_prefix, "fusebox_breaker_would_trip_total",
                            {"model": "r4j-shadow", "reason": "slow_call_rate"}) == 0
    finally:
        alerts.stop()
        breakers.close()
        receiver.server.shutdown()


@pytest.mark.redis
def test_what_if_command(redis_url: str, key_prefix: str) -> None:
    """``fusebox breaker what-if echo --failure-rate-threshold 0.3 --minimum-calls 5``
    replays what the Redis store recorded and says when that policy would have tripped."""
    from typer.testing import CliRunner

    from api.cli.commands import app
    from tests.support.processes import make_breakers

    breakers = make_breakers(redis_url, key_prefix)  # the default policy: 50 %, 20 calls
    breaker = breakers.get("echo")
    for outcome in [S, S, F] * 4:  # 33 % of 12 calls: nothing trips under the default policy
        breaker.record(breaker.admit(), outcome, 0.01, wait=True)
    assert breaker.snapshot().state == State.CLOSED
    breakers.close()
    env = {"FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": key_prefix}
    runner = CliRunner()
    text = runner.invoke(app, ["breaker", "what-if", "echo", "--failure-rate-threshold", "0.3", "--minimum-calls", "5"],
                         env=env)
    assert text.exit_code == 0, text.output
    said = " ".join(text.output.split())
    assert "would have tripped 1 time(s) over 12 calls in the last 24 h" in said
    assert "window failure rate 33.3% >= 30.0% over 12 calls" in said
    data = runner.invoke(app, ["breaker", "what-if", "echo", "--json"], env=env)
    assert data.exit_code == 0, data.output
    answer = json.loads(data.output)
    assert (answer["calls"], answer["trips"]) == (12, [])
    bad = runner.invoke(app, ["breaker", "what-if", "echo", "--failure-rate-threshold", "1.5"], env=env)
    assert "invalid policy" in str(bad.exception)  # main() prints it as one line, exit status 2


@pytest.mark.redis
@pytest.mark.slow
def test_refusals_while_the_store_is_frozen_are_counted_once(private_redis: RedisServer) -> None:
    """Every refusal counted, also across an outage: refusals decided from the pushed state
    whose write times out (a frozen Redis runs it when it wakes, or not) and those the local
    breaker decides meanwhile reach the fleet's total exactly once after the rejoin."""
    from breaker import Breakers, BreakerSettings, CallNotPermitted
    from tests.support.fleet import wait_for

    server = private_redis
    settings = BreakerSettings(redis_url=server.url, key_prefix="r4j-outage", redis_timeout=0.05,
                               refresh_interval=0.2, reconnect_interval=0.1)
    breakers = Breakers.from_url(server.url, settings=settings, default_policy=R4J_POLICY)
    try:
        assert breakers.wait_until_subscribed(10)
        breaker = breakers.get("ocr")
        breaker.force_open()
        refused = 0

        def refuse(n: int) -> None:
            nonlocal refused
            for _ in range(n):
                try:
                    breaker.admit()
                except CallNotPermitted:
                    refused += 1
                time.sleep(0.005)

        refuse(20)
        server.freeze()
        refuse(40)  # from the cache (writes time out), then from the local breaker
        assert wait_for(lambda: breakers.degraded, 5)
        refuse(20)
        server.resume()
        assert wait_for(lambda: not breakers.degraded, 10)
        breakers.flush()
        assert refused == 80
        wait_for(lambda: breaker.snapshot().totals.get("rejected", 0) >= 80, 10)
        wait_for(lambda: False, 0.5)  # a late duplicate would show up by now
        assert breaker.snapshot().totals.get("rejected", 0) == 80
    finally:
        breakers.close()
