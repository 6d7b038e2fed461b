"""The policy's numbers and their bounds as Lua, generated from :class:`BreakerPolicy`.

The scripts check every policy they read (an operator's stored policy may have been written
by hand, or by an older or newer fusebox), so that a missing or absurd field never makes a
script fail halfway. The bounds they check are the pydantic field constraints of
``BreakerPolicy``, turned into a Lua table here and prepended to every script
(``scripts.script_source``): one source, so a limit changed in Python is the limit in Redis.
The two rules that relate fields (``max_wait_in_open >= wait_in_open``,
``max_wait_in_half_open > call_timeout``) are written in both languages;
``tests/breaker/test_policy_bounds.py`` checks that the scripts refuse exactly what
pydantic refuses.
"""

from __future__ import annotations

import hashlib
import math
import types
import typing
from functools import lru_cache
from typing import NamedTuple

from breaker.policy import BreakerPolicy

#: Fields a stored policy may lack because a fusebox from before them wrote it: checked when
#: present, else the script that reads one uses its default. Fields that default to None
#: are optional anyway.
ADDED_LATER = ("slow_start",)


class NumberRule(NamedTuple):
    name: str
    lower: float
    upper: float
    lower_exclusive: bool
    upper_exclusive: bool
    integer: bool
    optional: bool


def _numeric_type(annotation: object) -> type | None:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(
        annotation) is typing.Union else (annotation,)
    numeric = [a for a in args if a in (int, float)]
    return numeric[0] if numeric else None


@lru_cache(maxsize=1)
def number_rules() -> tuple[NumberRule, ...]:
    """Every numeric policy field with its bounds, in the model's field order."""
    rules = []
    for name, field in BreakerPolicy.model_fields.items():
        kind = _numeric_type(field.annotation)
        if kind is None:
            continue
        lower, upper, lower_ex, upper_ex = -math.inf, math.inf, False, False
        for m in field.metadata:  # annotated_types' Ge, Gt, Le, Lt (what Field(ge=...) makes)
            if hasattr(m, "ge"):
                lower = float(m.ge)
            elif hasattr(m, "gt"):
                lower, lower_ex = float(m.gt), True
            elif hasattr(m, "le"):
                upper = float(m.le)
            elif hasattr(m, "lt"):
                upper, upper_ex = float(m.lt), True
        optional = field.default is None or name in ADDED_LATER
        rules.append(NumberRule(name, lower, upper, lower_ex, upper_ex, kind is int, optional))
    return tuple(rules)


def _lua_number(x: float) -> str:
    if math.isinf(x):
        return "math.huge" if x > 0 else "-math.huge"
    return repr(int(x)) if x == int(x) else repr(x)


def _lua_bool(b: bool) -> str:
    return "true" if b else "false"


@lru_cache(maxsize=1)
def lua_prelude() -> str:
    """The Lua that defines POLICY_NUMBERS, OPTIONAL_NUMBERS, policy_bounds() and
    POLICY_BOUNDS_ID (a digest of the bounds: a policy checked under other bounds is checked
    again)."""
    rules = number_rules()
    bounds = ",\n".join(
        f"    {r.name} = {{{_lua_number(r.lower)}, {_lua_number(r.upper)}, {_lua_bool(r.lower_exclusive)}, "
        f"{_lua_bool(r.upper_exclusive)}, {_lua_bool(r.integer)}}}"
        for r in rules
    )
    required = ", ".join(f"'{r.name}'" for r in rules if not r.optional)
    optional = ", ".join(f"'{r.name}'" for r in rules if r.optional)
    digest = hashlib.sha1(repr(rules).encode()).hexdigest()[:12]
    return (
        "-- Generated from BreakerPolicy by breaker/backends/policy_lua.py; not written by hand.\n"
        "-- policy_bounds(): name -> {lower, upper, lower exclusive, upper exclusive, integer}\n"
        f"local POLICY_BOUNDS_ID = '{digest}'\n"
        f"local POLICY_NUMBERS = {{{required}}}\n"
        f"local OPTIONAL_NUMBERS = {{{optional}}}\n"
        # Built on first use only: most script calls check no policy (tables cost Redis CPU).
        "local POLICY_BOUNDS = nil\n"
        "local function policy_bounds()\n"
        f"  POLICY_BOUNDS = POLICY_BOUNDS or {{\n{bounds},\n  }}\n"
        "  return POLICY_BOUNDS\n"
        "end\n"
    )
