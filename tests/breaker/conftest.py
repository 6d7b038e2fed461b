from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from tests.support.clock import ManualClock
from tests.support.driver import Driver

SCENARIO_POLICY = BreakerPolicy(
    minimum_calls=10,
    failure_rate_threshold=0.5,
    slow_call_duration=1.0,
    slow_call_rate_threshold=0.5,
    window=10,
    wait_in_open=10.0,
    wait_in_open_multiplier=2.0,
    max_wait_in_open=35.0,
    permitted_calls_in_half_open=3,
    max_wait_in_half_open=20.0,
    call_timeout=2.0,
)


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver(backend_kind: str, clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Driver]:
    """The same breaker on the in-memory machine or on the Redis scripts, time stepped by hand."""
    if backend_kind == "memory":
        yield Driver(InMemoryBackend(clock=clock), clock, SCENARIO_POLICY)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("key_prefix")
    yield Driver(RedisBackend(client, Keyspace(prefix), clock=clock), clock, SCENARIO_POLICY)


@pytest.fixture
def r4j(backend_kind: str, clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Driver]:
    """resilience4j's test breaker (tests/support/r4j.py) on either backend, time stepped by hand."""
    from tests.support.r4j import R4J_POLICY

    if backend_kind == "memory":
        yield Driver(InMemoryBackend(clock=clock), clock, R4J_POLICY)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("key_prefix")
    yield Driver(RedisBackend(client, Keyspace(prefix), clock=clock), clock, R4J_POLICY)
