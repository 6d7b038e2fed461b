"""Redis URLs (password, TLS), key prefixes, and processes forked from a parent that
already used its breakers (Celery's prefork pool does exactly that)."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from api.services import find_redis_server, free_port
from breaker import BreakerPolicy, Breakers, BreakerSettings, Outcome, State
from tests.support.processes import SPAWN, make_breakers
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


def test_password_url(tmp_path: Path) -> None:
    with RedisServer(password="s3cret pass".replace(" ", "-")) as server:
        assert ":s3cret-pass@" in server.url
        with Breakers.from_url(server.url, settings=BreakerSettings(key_prefix="pw")) as b:
            assert b.get("ocr").call(lambda: 1) == 1
            assert not b.degraded
        wrong = server.url.replace("s3cret-pass", "nope")
        with Breakers.from_url(wrong, settings=BreakerSettings(key_prefix="pw")) as b:
            assert b.get("ocr").call(lambda: 1) == 1  # still answers, on the local breaker
            assert b.degraded and "AuthenticationError" in (b.health().last_error or "")


def test_tls_url(tmp_path: Path) -> None:
    server_bin = find_redis_server()
    probe = subprocess.run([server_bin, "--tls-port", "1", "--port", "0"], capture_output=True, text=True, timeout=10)
    if "Bad directive" in probe.stdout + probe.stderr:
        pytest.skip(f"{server_bin} was built without TLS (.ci/run installs Debian's redis-server, which has it)")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = free_port()
    # The plain port stays open too: RedisServer checks readiness on it.
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
           "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with RedisServer(extra_args=tls):
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        with Breakers.from_url(url, settings=BreakerSettings(key_prefix="tls", redis_timeout=1.0)) as b:
            assert b.get("ocr").call(lambda: "over tls") == "over tls"
            assert not b.degraded, b.health()
            b.flush()
            assert b.get("ocr").snapshot().totals["success"] == 1
        # A client that does not trust the certificate cannot use the store.
        untrusted = f"rediss://127.0.0.1:{tls_port}/0"
        with Breakers.from_url(untrusted, settings=BreakerSettings(key_prefix="tls", redis_timeout=1.0)) as b:
            assert b.get("ocr").call(lambda: 1) == 1
            assert b.degraded and "certificate" in (b.health().last_error or "").lower()


def test_prefixes_isolate_deployments(redis_url: str, key_prefix: str) -> None:
    policy = BreakerPolicy(minimum_calls=1)
    with make_breakers(redis_url, key_prefix + "-a", policy) as a, make_breakers(redis_url, key_prefix + "-b", policy) as b:
        a.get("ocr").record(a.get("ocr").admit(), Outcome.FAILURE, 0.1, wait=True)
        assert a.get("ocr").snapshot().state == State.OPEN
        assert b.get("ocr").snapshot().state == State.CLOSED


def _forked_child(b: Breakers, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    b.get("ocr").call(lambda: None)
    b.flush()
    results.put((b.get("ocr").snapshot().totals.get("success", 0), b.degraded, b.wait_until_subscribed(5)))


def test_forked_children_get_their_own_threads(redis_url: str, key_prefix: str) -> None:
    b = make_breakers(redis_url, key_prefix)
    assert b.wait_until_subscribed()
    b.get("ocr").call(lambda: None)
    b.flush()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    children = [ctx.Process(target=_forked_child, args=(b, results)) for _ in range(3)]
    for c in children:
        c.start()
    seen = [results.get(timeout=30) for _ in children]
    for c in children:
        c.join(10)
        assert c.exitcode == 0
    assert all(not degraded and subscribed for _, degraded, subscribed in seen)
    b.flush()
    assert b.get("ocr").snapshot().totals["success"] == 4
    b.close()


def _policy_watcher(url: str, prefix: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    b = make_breakers(url, prefix, BreakerPolicy(minimum_calls=50))
    assert b.wait_until_subscribed(10)
    results.put(b.get("ocr").policy.minimum_calls)
    deadline = time.monotonic() + 10
    while b.get("ocr").policy.minimum_calls == 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    # The very next call is judged by the operator's policy: one failure trips.
    b.get("ocr").record(b.get("ocr").admit(), Outcome.FAILURE, 0.01, wait=True)
    results.put((b.get("ocr").policy.minimum_calls, b.get("ocr").state.value))
    b.close()


def test_policy_change_reaches_another_process_without_restart(redis_url: str, key_prefix: str) -> None:
    results = SPAWN.Queue()
    child = SPAWN.Process(target=_policy_watcher, args=(redis_url, key_prefix, results))
    child.start()
    assert results.get(timeout=60) == 50
    with make_breakers(redis_url, key_prefix) as operator:
        operator.set_policy("ocr", BreakerPolicy(minimum_calls=1))
    assert results.get(timeout=30) == (1, "open")
    child.join(10)


def _child_after_change(b: Breakers, go: multiprocessing.Event, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    go.wait(30)
    results.put(b.get("ocr").policy.minimum_calls)


def test_a_child_forked_before_a_policy_change_uses_the_new_policy(redis_url: str, key_prefix: str) -> None:
    """Celery forks its pool at start; an operator changes a policy later; the pool
    process's first call must already follow it (it once used the configured one)."""
    b = make_breakers(redis_url, key_prefix, BreakerPolicy(minimum_calls=50))
    b.get("ocr").call(lambda: None)
    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child_after_change, args=(b, go, results))
    child.start()
    with make_breakers(redis_url, key_prefix) as operator:
        operator.set_policy("ocr", BreakerPolicy(minimum_calls=7))
    go.set()
    assert results.get(timeout=30) == 7
    child.join(10)
    b.close()


def _child_with_held_locks(b: Breakers, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    b.get("ocr").call(lambda: None)
    b.add_listener(lambda e: None)
    results.put((b.known_state("ocr").value, b.get("ocr").snapshot().state.value))


def test_a_child_forked_while_the_parent_holds_every_lock_does_not_hang(redis_url: str, key_prefix: str) -> None:
    """Celery forks a replacement pool process whenever one dies, while the parent's
    subscriber and recorder threads run: any lock one of them held at that instant is held
    forever in the child. Every lock the registry owns is replaced after a fork."""
    b = make_breakers(redis_url, key_prefix)
    assert b.wait_until_subscribed()
    b.get("ocr").call(lambda: None)
    locks = [b._lock, b.cache._lock, b.local._lock, b.listeners._lock, b.failsafe._lock,
             b.failsafe.tally._lock]
    for lock in locks:
        lock.acquire()  # as if the parent's threads were inside them at the fork
    try:
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        child = ctx.Process(target=_child_with_held_locks, args=(b, results))
        child.start()
        assert results.get(timeout=20) == ("closed", "closed")
        child.join(10)
        assert child.exitcode == 0
    finally:
        for lock in locks:
            lock.release()
        b.close()


def test_an_unsafe_eviction_policy_is_shown_in_health(private_redis: RedisServer) -> None:
    redis.Redis.from_url(private_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    with make_breakers(private_redis.url, "evict") as b:
        assert b.wait_until_subscribed()
        health = b.health()
        assert health.eviction_policy == "allkeys-lru" and health.eviction_safe is False
    redis.Redis.from_url(private_redis.url).config_set("maxmemory-policy", "noeviction")
    with make_breakers(private_redis.url, "evict") as b:
        assert b.wait_until_subscribed()
        assert b.health().eviction_safe is True


def test_events_are_heard_after_a_restart_that_rewinds_the_stream(private_redis: RedisServer) -> None:
    """Stream positions from a store that was restarted without its data (or replaced by a
    replica that lacks the tail) mean nothing on the new one: new events with smaller ids
    must not be taken for already seen ones."""
    heard: list[str] = []
    with make_breakers(private_redis.url, "rewind", reconnect_interval=0.1) as b:
        assert b.wait_until_subscribed()
        b.add_listener(lambda e: heard.append(e.reason) if e.kind == "transition" else None)
        db = redis.Redis.from_url(private_redis.url)
        # An event far in the future (a clock that ran ahead): the subscriber's position.
        db.xadd("rewind:events", {"event": '{"kind": "policy", "breaker": "x"}'}, id="99999999999999-0")
        b._subscriber.resubscribe()
        assert wait_until(lambda: b._subscriber.last_stream_id == "99999999999999-0")
        private_redis.kill()
        private_redis.start()  # empty again
        assert wait_until(lambda: b.cache.subscribed and not b.degraded, 15)
        with make_breakers(private_redis.url, "rewind") as op:
            op.get("ocr").trip(reason="after the restart")
        assert wait_until(lambda: "after the restart" in heard, 5), heard


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
