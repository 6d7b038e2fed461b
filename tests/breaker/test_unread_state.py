"""No decision on a state the process has not read (or has not heard of for too long)."""

from __future__ import annotations

import redis

from breaker import BreakerPolicy, Breakers, BreakerSettings, State
from tests.support.clock import ManualClock

POLICY = BreakerPolicy(wait_in_open=120, max_wait_in_open=120)


def settings(url: str, prefix: str, refresh: float = 1.0) -> BreakerSettings:
    return BreakerSettings(redis_url=url, key_prefix=prefix, refresh_interval=refresh, redis_timeout=1.0)


def test_a_new_process_reads_the_state_before_routing(redis_url: str, key_prefix: str) -> None:
    with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix), default_policy=POLICY) as op:
        op.get("ocr").force_open(reason="drill")
        op.get("ner").trip(reason="drill")
    # Not subscribed yet, never refreshed: the first question is answered from the store.
    with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix), default_policy=POLICY,
                           subscribe=False) as fresh:
        assert fresh.known_state("ocr") == State.FORCED_OPEN
        assert fresh.known_state("ner") == State.OPEN
        assert fresh.open_remaining("ner") is not None and fresh.open_remaining("ner") > 100
        assert fresh.known_state("never-seen") == State.CLOSED  # the store knows nothing of it


def test_a_view_older_than_the_refresh_interval_is_read_again(redis_url: str, key_prefix: str) -> None:
    """A process that was away (a GC pause, a stopped container) must not route on what it
    knew before: here the store changes behind its back (no event published), and the old
    view is used only while it is younger than the refresh interval."""
    clock = ManualClock()
    # A long refresh interval, so that the subscriber's own re-read cannot happen mid-test.
    with Breakers.from_url(redis_url, settings=settings(redis_url, key_prefix, refresh=30), default_policy=POLICY,
                           clock=clock) as b:
        assert b.wait_until_subscribed()
        b.get("ocr").reset(reason="created")
        assert b.known_state("ocr") == State.CLOSED
        b.cache.mark_refreshed()
        redis.Redis.from_url(redis_url).hset(f"{key_prefix}:breaker:ocr", mapping={"state": "forced_open",
                                                                                 "epoch": 99})
        assert b.known_state("ocr") == State.CLOSED  # a fresh view is trusted (pushes flow)
        clock.advance(46)  # away for longer than the refresh interval (x1.5)
        assert b.known_state("ocr") == State.FORCED_OPEN
