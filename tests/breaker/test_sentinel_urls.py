"""``sentinel://`` URLs: what is parsed from them, what Celery gets, the errors for bad ones
(pure unit tests), and one real Sentinel deployment with passwords on both sides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from pydantic import ValidationError

from breaker import Breakers, BreakerSettings
from breaker.connection import (
    SentinelAddress,
    celery_transport_options,
    celery_url,
    parse_sentinel_url,
    redact,
    redis_client,
)
from tests.support.sentinel import SentinelCluster
from workers.app import make_app
from workers.settings import Settings


def test_the_documented_form_is_parsed() -> None:
    address = parse_sentinel_url("sentinel://host:26379;sentinel://host2:26380/3?master_name=mymaster")
    assert address == SentinelAddress(sentinels=(("host", 26379), ("host2", 26380)), master_name="mymaster", db=3)


def test_passwords_master_and_sentinel() -> None:
    url = "sentinel://app:p%40ss@h1;sentinel://app:p%40ss@h2:26380/1?master_name=m&sentinel_password=s%20pw"
    a = parse_sentinel_url(url)
    assert (a.username, a.password, a.sentinel_password, a.db) == ("app", "p@ss", "s pw", 1)
    assert a.sentinels == (("h1", 26379), ("h2", 26380))  # 26379 by default
    # Celery reads credentials and db from the first part (kombu) or host (the backend):
    # every part carries them, and the query (which Celery would pass to redis-py) is gone.
    assert celery_url(url) == "sentinel://app:p%40ss@h1:26379/1;sentinel://app:p%40ss@h2:26380/1"
    assert celery_transport_options(url) == {
        "master_name": "m",
        "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "password": "s pw"},
    }
    assert redact(url) == ("sentinel://app:***@h1;sentinel://app:***@h2:26380/1"
                           "?master_name=m&sentinel_password=***")
    assert redact("unix:///run/r.sock?db=1&password=x") == "unix:///run/r.sock?db=1&password=***"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sentinel://h1:26379", "master_name"),
        ("sentinel://h1;redis://h2?master_name=m", "every part must start with sentinel://"),
        ("sentinel://h1/zero?master_name=m", "database must be a number"),
        ("sentinel://h1?master_name=m&service=x", "unknown parameter 'service'"),
        ("sentinel://h1/1;sentinel://h2/2?master_name=m", "two different values for db"),
        ("sentinel://:a@h1;sentinel://:b@h2?master_name=m", "two different values for password"),
        ("sentinel://h1:notaport?master_name=m", "bad sentinel URL"),
    ],
)
def test_bad_sentinel_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_sentinel_url(url)
    with pytest.raises(ValidationError, match=reason):
        BreakerSettings(redis_url=url)
    with pytest.raises(ValidationError, match=reason):
        Settings(redis_url=url)


def test_other_urls_are_left_to_redis_py_and_celery() -> None:
    for url in ("redis://:pw@h:6379/2", "rediss://h/0?ssl_ca_certs=/x.pem", "unix:///run/redis.sock?db=1"):
        assert celery_url(url) == url and celery_transport_options(url) == {}
        assert BreakerSettings(redis_url=url).redis_url == url
    with pytest.raises(ValidationError, match="unsupported Redis URL"):
        BreakerSettings(redis_url="http://h:6379")
    # Another broker keeps working (only a sentinel:// broker URL is parsed here).
    assert Settings(broker_url="amqp://guest:guest@h:5672//").broker_is_redis is False


def test_the_celery_app_uses_the_sentinel_transport_and_backend() -> None:
    s = Settings(redis_url="sentinel://:pw@a:1;sentinel://:pw@b:2/4?master_name=m", broker_key_prefix="x:")
    app = make_app(s)
    assert app.conf.broker_url == app.conf.result_backend == "sentinel://:pw@a:1/4;sentinel://:pw@b:2/4"
    for options in (app.conf.broker_transport_options, app.conf.result_backend_transport_options):
        assert options["master_name"] == "m" and options["global_keyprefix"] == "x:"
    assert type(app.backend).__name__ == "SentinelBackend"
    assert s.broker_is_redis


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(password="master pw", sentinel_password="sentinel pw") as c:
        yield c


@pytest.mark.redis
@pytest.mark.slow
def test_clients_reach_the_master_through_password_protected_sentinels(cluster: SentinelCluster) -> None:
    client = redis_client(cluster.url, 1.0)
    client.set("fusebox-sentinel-check", "1")
    assert cluster.direct(cluster.master).get("fusebox-sentinel-check") == b"1"  # on the master, not a replica
    with Breakers.from_url(cluster.url, settings=BreakerSettings(key_prefix="sentinel-check")) as b:
        b.get("ocr").trip(reason="drill")
        assert b.get("ocr").snapshot().local is False
        assert not b.degraded

    wrong_sentinel = cluster.url.replace("sentinel_password=sentinel%20pw", "sentinel_password=nope")
    with pytest.raises(redis.RedisError):
        redis_client(wrong_sentinel, 1.0).ping()
    wrong_master = cluster.url.replace("master%20pw", "nope")
    with pytest.raises(redis.AuthenticationError):
        redis_client(wrong_master, 1.0).ping()
