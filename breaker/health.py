"""What a process reports about the breaker store: why it decides alone, if it does, and
the figures health checks and metrics show."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class StoreFault(StrEnum):
    """Why a process decides with its local breaker."""

    UNREACHABLE = "unreachable"
    REFUSING = "refusing"
    SCRIPT_ERROR = "script_error"


#: Eviction policies that may drop a breaker's keys (which carry no TTL): an OPEN breaker
#: evicted under memory pressure would silently start again CLOSED.
UNSAFE_EVICTION = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


class StoreHealth(BaseModel):
    """What health checks and metrics report about the breaker store.

    Parameters:
      shared: True when decisions are the fleet's (Redis answers and runs the scripts).
      degraded: True when this process decides with its local breaker.
      degraded_since: wall-clock seconds when it lost the store, if degraded.
      fault: why it is degraded: ``unreachable``, ``refusing`` (answers but refuses the
        scripts: OOM, READONLY...) or ``script_error``.
      last_error: the error that made it degraded (or the last failed rejoin).
      rejoin_in: seconds until the next attempt to rejoin, while degraded.
      losses: times this process lost the store; flaps: of those, losses soon after a
        rejoin (each makes the next wait longer).
      subscribed: whether pushes from the store are flowing.
      subscription_silence: seconds since the subscription last showed a sign of life
        (a message or the answer to its ping); a silently dead one is noticed within 2 s.
      pending_outcomes: outcomes waiting to be written.
      dropped_outcomes: outcomes dropped because the queue was full; dropped_by: the same
        per breaker.
      tallied_outcomes: outcomes decided locally and not yet handed back to the store.
      lost_outcomes: outcomes of writes whose answer was lost longer ago than the store
        remembers write ids (``IDEMPOTENCY_HORIZON_S``): not handed back, so never counted
        twice; they may be in the store or not.
      eviction_policy: the store's ``maxmemory-policy`` (None when CONFIG is not allowed).
      eviction_safe: False when that policy may evict breaker keys (``allkeys-*``).
      policy_problems: breakers whose stored policy the scripts refused, with why.
    """

    shared: bool
    degraded: bool
    degraded_since: float | None = None
    fault: StoreFault | None = None
    last_error: str | None = None
    rejoin_in: float | None = None
    losses: int = 0
    flaps: int = 0
    subscribed: bool
    subscription_silence: float | None = None
    pending_outcomes: int
    dropped_outcomes: int
    dropped_by: dict[str, int] = {}
    tallied_outcomes: int = 0
    lost_outcomes: int = 0
    eviction_policy: str | None = None
    eviction_safe: bool | None = None
    policy_problems: dict[str, str] = {}
