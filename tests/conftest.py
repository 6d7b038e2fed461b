"""Fixtures every test may use: a real Redis (the one at FUSEBOX_REDIS_URL when it answers,
else one these tests start), a key prefix of each test's own, and manual clocks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from api.services import ensure_redis
from tests.support.redis_server import RedisServer
from tests.support.clock import ManualClock


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: FUSEBOX_REDIS_URL's when it does, else one of our own."""
    with ensure_redis() as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"fusebox-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, which the test may stop, kill or freeze."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session", autouse=True)
def _stop_rabbitmq_we_started() -> Iterator[None]:
    """A RabbitMQ node the tests had to start (tests.support.rabbit) stops with the session."""
    yield
    from tests.support import rabbit

    if rabbit._rabbit is not None:
        rabbit._rabbit.close()
