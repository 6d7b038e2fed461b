from __future__ import annotations

import pytest
import redis
from pydantic import ValidationError

from breaker import Control, State
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.errors import CallTimeout, ExceptionClassifier, InputError
from breaker.policy import TIERS, BreakerPolicy
from breaker.settings import BreakerSettings
from breaker.state import Outcome, check_name


def test_defaults_follow_the_architecture() -> None:
    p = BreakerPolicy()
    assert (p.minimum_calls, p.failure_rate_threshold, p.wait_in_open, p.call_timeout) == (20, 0.5, 30.0, 5.0)


def test_tiers() -> None:
    core, aux = BreakerPolicy.for_tier("core"), BreakerPolicy.for_tier("auxiliary")
    assert core.failure_rate_threshold == 0.4 and aux.failure_rate_threshold == 0.6
    assert core.wait_in_open > aux.wait_in_open  # long recovery against fast retry
    assert aux.call_timeout < core.call_timeout  # fast cutoff
    assert set(TIERS) == {"core", "auxiliary"}


def test_tier_overrides_are_validated() -> None:
    p = BreakerPolicy.for_tier("core", minimum_calls=5)
    assert p.minimum_calls == 5 and p.tier == "core" and p.failure_rate_threshold == 0.4
    with pytest.raises(ValidationError):
        BreakerPolicy.for_tier("core", failure_rate_threshold=1.5)
    with pytest.raises(ValueError, match="unknown tier"):
        BreakerPolicy.for_tier("gold")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"failure_rate_threshold": 0}, "greater than 0"),
        ({"minimum_calls": 0}, "greater than or equal to 1"),
        ({"wait_in_open": 60, "max_wait_in_open": 30}, "max_wait_in_open"),
        ({"call_timeout": 10, "max_wait_in_half_open": 10}, "longer than call_timeout"),
        ({"window": 0}, "greater than or equal to 1"),
        ({"wait_in_open_multiplier": 0.5}, "greater than or equal to 1"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_invalid_policies_are_refused_with_a_reason(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BreakerPolicy(**fields)


def test_growing_wait() -> None:
    p = BreakerPolicy(wait_in_open=10, wait_in_open_multiplier=3, max_wait_in_open=50)
    assert [p.wait_after_trips(n) for n in (1, 2, 3, 4)] == [10, 30, 50, 50]


def test_redis_round_trip() -> None:
    p = BreakerPolicy.for_tier("auxiliary", minimum_calls=7)
    assert BreakerPolicy.from_redis({k.encode(): v.encode() for k, v in p.to_redis().items()}) == p
    plain = BreakerPolicy()
    assert BreakerPolicy.from_redis({**plain.to_redis(), "added_in_v9": "1"}) == plain


def test_classifier() -> None:
    c = ExceptionClassifier()
    assert c.classify(InputError("bad image")) == Outcome.IGNORED
    assert c.classify(CallTimeout()) == Outcome.TIMEOUT
    assert c.classify(TimeoutError()) == Outcome.TIMEOUT
    assert c.classify(RuntimeError("CUDA error")) == Outcome.FAILURE
    assert c.classify(MemoryError()) == Outcome.FAILURE
    assert c.classify(KeyboardInterrupt()) == Outcome.IGNORED
    custom = ExceptionClassifier(ignored=(KeyError,), timeouts=())
    assert custom.classify(KeyError()) == Outcome.IGNORED
    assert custom.classify(InputError()) == Outcome.FAILURE


@pytest.mark.parametrize("name", ["ocr", "ner", "ocr.v2", "model_1", "A-b"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a:b", "a b", "-x", "x" * 65, "ocr\n", "{ocr}"])
def test_names_that_would_break_keys_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid breaker name"):
        check_name(name)


def test_settings_are_checked() -> None:
    # The library reads no environment (workers.settings does: tests/test_doc_tables.py).
    s = BreakerSettings(redis_url="rediss://:pw@h:6380/2", key_prefix="x", redis_timeout=0.02)
    assert (s.redis_url, s.key_prefix, s.redis_timeout) == ("rediss://:pw@h:6380/2", "x", 0.02)
    assert BreakerSettings().redis_timeout <= 0.05
    with pytest.raises(ValidationError):
        BreakerSettings(redis_timeout="soon")
    with pytest.raises(ValidationError):
        BreakerSettings(key_prefix="has space")


def test_optional_numbers_absent_null_or_empty_load_in_lua(redis_client: redis.Redis, key_prefix: str) -> None:
    """A policy sent as JSON has null for an unset optional number (reference_megapixels);
    stored as a hash it is empty or missing. The scripts must take all three as unset."""

    backend = RedisBackend(redis_client, Keyspace(key_prefix))
    policy = BreakerPolicy(reference_megapixels=None, slow_start=0)
    assert backend.control("m", policy, Control.TRIP, "test").to_state == State.OPEN  # JSON: null
    backend.set_policy("m", policy, "test")  # hash: ""
    assert backend.snapshot("m", policy).policy == policy
    redis_client.hdel(f"{key_prefix}:breaker:m:policy", "reference_megapixels", "slow_start")  # missing
    assert backend.get_policy("m") is not None
    assert backend.admit("m", policy, "test").state == State.OPEN
    assert not backend.policy_problems
