"""A transition reaches every subscribed process; the delay is measured and printed."""

from __future__ import annotations

import statistics
import time

import pytest

from breaker import BreakerPolicy, Control
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.connection import redis_client
from tests.support.processes import SPAWN, listen

pytestmark = pytest.mark.redis

LISTENERS = 4


def test_every_process_hears_every_transition(redis_url: str, key_prefix: str) -> None:
    ready, results = SPAWN.Queue(), SPAWN.Queue()
    procs = [SPAWN.Process(target=listen, args=(redis_url, key_prefix, ready, results, 3)) for _ in range(LISTENERS)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    backend = RedisBackend(redis_client(redis_url, 1.0), Keyspace(key_prefix))
    policy = BreakerPolicy()
    sent = []
    for action in (Control.FORCE_OPEN, Control.RESET, Control.TRIP):
        event = backend.control("shared", policy, action, "test")
        sent.append(event)
        time.sleep(0.05)
    heard = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)

    delays_ms = []
    for per_process in heard:
        assert [e["epoch"] for _, e in per_process] == [e.epoch for e in sent]
        assert [e["to_state"] for _, e in per_process] == ["forced_open", "closed", "open"]
        delays_ms += [received * 1000 - e["at_ms"] for received, e in per_process]
    print(f"\npub/sub delay over {len(delays_ms)} deliveries: p50 {statistics.median(delays_ms):.2f} ms, "
          f"max {max(delays_ms):.2f} ms")
