"""Eight OS processes (and, in half-open, 32 threads) against one breaker."""

from __future__ import annotations

import time

import pytest
import redis

from breaker import BreakerPolicy, Control, State
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from tests.support.processes import SPAWN, grab_permits, hammer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES = 8


def test_no_outcome_lost_one_trip_exactly_n_probes(redis_url: str, redis_client: redis.Redis, key_prefix: str) -> None:
    policy = BreakerPolicy(minimum_calls=400, failure_rate_threshold=0.5, window=60, wait_in_open=60,
                           permitted_calls_in_half_open=3, call_timeout=5, max_wait_in_half_open=60)
    backend = RedisBackend(redis_client, Keyspace(key_prefix))

    # Phase 1: everyone hammers; failures pile up from eight processes at once.
    start, results = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=hammer, args=(redis_url, key_prefix, policy.model_dump_json(), 400, start, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    counts = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0

    recorded = sum(c["recorded"] for c in counts)
    snap = backend.snapshot("shared", policy)
    totals = snap.totals
    assert totals.get("success", 0) + totals.get("failure", 0) == recorded, (totals, counts)
    assert recorded >= policy.minimum_calls
    trips = [e for e in backend.history("shared", 1000) if e.kind == "transition"]
    assert [(e.from_state, e.to_state) for e in trips] == [(State.CLOSED, State.OPEN)]
    assert snap.state == State.OPEN
    assert sum(c["rejected"] for c in counts) > 0  # the trip reached the other processes

    # Phase 2: a short wait, then 8 processes x 4 threads ask for probe permits at once.
    quick = policy.model_copy(update={"wait_in_open": 1.0})
    backend.set_policy("shared", quick, "test")
    # A trip of an OPEN breaker changes nothing (issue 27): reset, then trip with the short wait.
    backend.control("shared", quick, Control.RESET, "test")
    backend.control("shared", quick, Control.TRIP, "test")
    not_before = time.time() + 1.5
    start, results = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=grab_permits,
                           args=(redis_url, key_prefix, quick.model_dump_json(), 4, not_before, start, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    granted = [permit for _ in procs for permit in results.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(granted) == 3, granted
    assert len(set(granted)) == 3 and -1 not in granted
    snap = backend.snapshot("shared", quick)
    assert snap.state == State.HALF_OPEN
    assert snap.probes_outstanding == 3
    assert snap.totals["probes_granted"] == 3
