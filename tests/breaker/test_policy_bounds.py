"""The scripts refuse exactly the policies BreakerPolicy refuses: the bounds are generated
from its fields (breaker/backends/policy_lua.py), the rules that relate two fields are
written in both languages, and this checks both on random policies near every bound."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from breaker.backends.policy_lua import lua_prelude, number_rules
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy

pytestmark = pytest.mark.redis

RULES = {r.name: r for r in number_rules()}


def near_bounds(name: str) -> st.SearchStrategy[object]:
    """Values at, just inside and just outside a field's bounds, and some plainly wrong."""
    r = RULES[name]
    points = [r.lower, r.upper, 0, 1, 2.5, -1, 5, 60, 3600.5, 10**7]
    around = [x + d for x in points if abs(x) != float("inf") for d in (-1e-6, 0, 1e-6, -1, 1)]
    values = st.sampled_from(around)
    if r.integer:
        return st.one_of(values, st.integers(-2, 10**7 + 1))
    return values


@st.composite
def flat_policies(draw: st.DrawFn) -> dict[str, str]:
    flat = BreakerPolicy().to_redis()
    for name in draw(st.lists(st.sampled_from(sorted(RULES)), min_size=1, max_size=3, unique=True)):
        value = draw(near_bounds(name))
        flat[name] = repr(int(value)) if RULES[name].integer and value == int(value) else repr(float(value))
    return flat


def test_every_numeric_field_has_its_bounds_in_the_scripts() -> None:
    prelude = lua_prelude()
    for name, field in BreakerPolicy.model_fields.items():
        if field.annotation in (int, float, int | None, float | None):
            assert f"    {name} = {{" in prelude, name
    assert RULES["window"].upper == 3600 and RULES["window"].integer
    assert RULES["consecutive_failures_threshold"].optional


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flat=flat_policies())
def test_the_scripts_refuse_what_pydantic_refuses(redis_client: redis.Redis, flat: dict[str, str]) -> None:
    try:
        BreakerPolicy.from_redis(flat)
        accepted = True
    except (ValidationError, ValueError):
        accepted = False
    backend = RedisBackend(redis_client, Keyspace(f"fusebox-bounds-{uuid.uuid4().hex[:8]}"))
    try:
        pairs = [x for item in flat.items() for x in item]
        reply = backend._run("policy", "m", BreakerPolicy(), "op", "set", *pairs)
    finally:
        keys = list(redis_client.scan_iter(f"{backend.keys.prefix}:*"))
        if keys:
            redis_client.delete(*keys)
    assert ("error" not in reply) == accepted, (flat, reply)
