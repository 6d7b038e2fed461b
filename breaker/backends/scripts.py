"""The breaker scripts' Lua source, assembled: the policy's bounds (generated from
BreakerPolicy, see breaker.backends.policy_lua), ``common.lua`` (keys, policy, state and the
state machine's rules), ``window.lua`` (the sliding window), ``shadow.lua`` (METRICS_ONLY's
would-trip events and the what-if history), then the script's own file.
Files live in ``lua/`` beside this module."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from breaker.backends.policy_lua import lua_prelude

SCRIPTS = ("admit", "record", "control", "snapshot", "policy", "merge")
#: Scripts that stand alone (no breaker keys, no shared Lua).
STANDALONE_SCRIPTS = ("probe", "refusals")
#: Shared by every other script, in this order, before its own file.
SHARED = ("common", "window", "shadow")


@lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """The full source of one script (``ramp`` included)."""
    lua = resources.files("breaker.backends").joinpath("lua")
    own = lua.joinpath(f"{name}.lua").read_text()
    if name in STANDALONE_SCRIPTS:
        return own
    return lua_prelude() + "".join(lua.joinpath(f"{s}.lua").read_text() + "\n" for s in SHARED) + own
