"""The sliding window's running sums (breaker/window.py, and common.lua in Redis)."""

from __future__ import annotations

import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from breaker.backend import RecordRequest
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.state import Outcome
from breaker.window import SlidingWindow
from tests.support.clock import ManualClock
from tests.support.redis_server import RedisServer

steps = st.lists(
    st.tuples(st.integers(0, 7000), st.booleans(), st.booleans(), st.sampled_from([1, 3, 60, 3600])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_running_sums_equal_a_full_count(steps: list[tuple[int, bool, bool, int]]) -> None:
    """Whatever the gaps and window changes, the sums are those of a count from scratch over
    the buckets kept (a bucket is dropped when an outcome is added after it fell out)."""
    w = SlidingWindow()
    now = 1_700_000_000_000
    kept: list[tuple[int, bool, bool]] = []
    for step_ms, failure, slow, window in steps:
        now += step_ms
        oldest = now // 1000 - window + 1
        read = w.stats(now, window)
        inside = [c for c in kept if c[0] >= oldest]
        assert (read.calls, read.failures, read.slow) == (len(inside), sum(c[1] for c in inside),
                                                          sum(c[2] for c in inside))
        stats = w.add(now, window, failures=int(failure), slow=int(slow))
        kept = [c for c in kept if c[0] >= oldest] + [(now // 1000, failure, slow)]
        assert (stats.calls, stats.failures, stats.slow) == (len(kept), sum(c[1] for c in kept),
                                                             sum(c[2] for c in kept))


def test_a_window_written_before_the_running_sums_is_taken_over(redis_client: redis.Redis, key_prefix: str) -> None:
    """A window hash of buckets only (a fusebox from before the sums) is summed once and
    then kept up to date: a rolling deploy loses none of its outcomes."""
    clock = ManualClock()
    backend = RedisBackend(redis_client, Keyspace(key_prefix), clock=clock)
    policy = BreakerPolicy(window=60, minimum_calls=5)
    ticket = backend.admit("m", policy, "t").ticket
    assert ticket is not None
    window_key = backend.keys.breaker("m")[1]
    second = int(clock()) - 10
    redis_client.hset(window_key, mapping={f"c{second}": 3, f"f{second}": 1, f"c{second - 100}": 7})
    backend.record(RecordRequest("m", policy, ticket, Outcome.FAILURE, 0.01, "t"))
    snap = backend.snapshot("m", policy)
    assert (snap.window.calls, snap.window.failures) == (4, 2)  # the bucket 100 s old fell out
    assert redis_client.hget(window_key, f"c{second - 100}") is None
    assert redis_client.hget(window_key, "m0") is not None


def test_a_record_call_reads_only_what_expired(private_redis: RedisServer) -> None:
    """Recording costs the same for any window length (issue 22: it re-read the whole
    window on every call): with an hour's window full of buckets, a record call reads the
    running sums and the buckets that expired since the last call, never the whole window,
    and sends the same commands as with a minute's window. (The time it takes is measured
    in benchmarks.breaker_overhead, not here.)"""
    client = redis.Redis.from_url(private_redis.url)
    seen: dict[int, list[str]] = {}
    for window in (60, 3600):
        clock = ManualClock()
        backend = RedisBackend(client, Keyspace(f"w{window}"), clock=clock)
        policy = BreakerPolicy(window=window, minimum_calls=10**6)
        ticket = backend.admit("m", policy, "t").ticket
        assert ticket is not None
        requests = [RecordRequest("m", policy, ticket, o, 0.01, "t") for o in (Outcome.SUCCESS, Outcome.FAILURE)]
        for i in range(window):  # a bucket in every second of the window
            backend.record(requests[i % 2])
            clock.advance(1.0)
        window_key = backend.keys.breaker("m")[1]
        with client.monitor() as monitor:
            for i in range(20):
                backend.record(requests[i % 2])
                clock.advance(0.1)
            client.echo("end-of-records")
            commands = []
            while "end-of-records" not in (command := monitor.next_command()["command"]):
                if f"w{window}:" in command and not command.startswith("EVALSHA"):
                    commands.append(command)  # what the scripts ran
        window_reads = [c for c in commands if window_key in c and c.split()[0] in ("HGETALL", "HVALS", "HKEYS")]
        assert window_reads == []
        seen[window] = [c.split()[0] for c in commands]
    assert seen[60] == seen[3600]
