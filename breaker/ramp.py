"""Slow start: after a recovery, the fleet's calls on a model ramp up instead of jumping.

When a breaker closes after its probes (HALF_OPEN to CLOSED), every worker would otherwise
resume at once and every parked job would be re-sent, hitting the model at the moment it is
most fragile (a GPU model reloading, a cache warming up). With ``slow_start`` > 0 in the
policy, a fleet-wide limit on calls in flight applies for that many seconds: it starts at
``permitted_calls_in_half_open`` and doubles every fifth of the period (N, 2N, 4N, 8N, 16N),
then goes away. The period counts from the first call after the close (workers take a
moment to resume consuming, and a limit that grew while nobody called would protect
nothing), or from ``slow_start`` after the close if nobody called by then. The limit and the slots held against it live in the store next to the
breaker (``<prefix>:breaker:<name>:ramp`` and ``:slots``) and change in one atomic script
call, like the breaker itself. A caller takes a slot before the call and gives it back
after; a slot whose holder died is given back after ``max_wait_in_half_open``.

Whoever hands out probes arms the ramp while the breaker is HALF_OPEN (``arm`` with that
epoch; idempotent); the ramp then runs in the CLOSED epoch that directly follows, from the
first call after the breaker closed. So a ramp needs no event to start, and every process
agrees on when it began. It belongs to that one CLOSED epoch: a trip during the ramp ends it (the
breaker decides again), and so does any later transition.
"""

from __future__ import annotations

import threading
import uuid

from pydantic import BaseModel

from breaker.policy import BreakerPolicy
from breaker.state import State

#: The limit doubles this many times over ``slow_start``, then the ramp ends.
RAMP_STEPS = 5


def ramp_limit(first: int, elapsed_ms: int, period_ms: int) -> int | None:
    """The limit ``elapsed_ms`` after the ramp began; None once it is over.

    Parameters:
      first: the limit at the start (the policy's ``permitted_calls_in_half_open``).
      elapsed_ms: milliseconds since the breaker closed.
      period_ms: the policy's ``slow_start`` in milliseconds.
    """
    if period_ms <= 0 or elapsed_ms >= period_ms or elapsed_ms < 0:
        return None
    return first * 2 ** (elapsed_ms * RAMP_STEPS // period_ms)


class RampStatus(BaseModel):
    """One breaker's ramp as the store saw it.

    Parameters:
      active: True while the ramp limits calls.
      limit: calls in flight allowed fleet-wide now (None when no ramp is active).
      in_flight: slots held now.
      epoch: the breaker's epoch when this was read.
      started_ms / ends_ms: when the ramp of this CLOSED epoch began (or begins at the
        latest, if no call came yet) and ends, on the store's clock (None when this epoch
        has no ramp).
      now_ms: the store's clock when this was read.
      granted: for an acquisition, whether the caller may call now.
      slot: for an acquisition, whether a slot was taken (and must be released).
      armed: for an ``arm``, whether this call armed the ramp (False when another process
        did, or when the breaker is not in that HALF_OPEN epoch).
    """

    active: bool = False
    limit: int | None = None
    in_flight: int = 0
    epoch: int | None = None
    started_ms: int | None = None
    ends_ms: int | None = None
    now_ms: int = 0
    granted: bool = True
    slot: bool = False
    armed: bool = False

    @property
    def remaining(self) -> float:
        """Seconds until the ramp ends (0 when none is active)."""
        if not self.active or self.ends_ms is None:
            return 0.0
        return max(0.0, (self.ends_ms - self.now_ms) / 1000)

    def describe(self) -> str:
        """One line for people: ``recovering: 8 of 32 slots``, or empty when no ramp runs."""
        if not self.active or self.limit is None:
            return ""
        return f"recovering: {self.in_flight} of {self.limit} slots"


def new_token() -> str:
    """A slot's name: unique per call."""
    return uuid.uuid4().hex


class LocalRamps:
    """The same rules in memory, for :class:`breaker.backends.memory.InMemoryBackend`
    (a slot is given back after ``max_wait_in_half_open`` without a release, as in Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, int] = {}
        self._started: dict[str, int] = {}
        self._slots: dict[str, dict[str, int]] = {}

    def run(
        self, name: str, policy: BreakerPolicy, state: State, epoch: int, changed_at_ms: int, now_ms: int,
        action: str, arg: str = "",
    ) -> RampStatus:
        """One ramp action (``arm``, ``acquire``, ``release``, ``status``), as ramp.lua does it.

        Parameters:
          name: the breaker.
          policy: its effective policy.
          state / epoch / changed_at_ms: the breaker now.
          now_ms: the clock now.
          action: what to do.
          arg: the HALF_OPEN epoch for ``arm``, the slot token for ``acquire`` and ``release``.
        """
        period_ms = round(policy.slow_start * 1000)
        with self._lock:
            slots = self._slots.setdefault(name, {})
            armed = self._armed.get(name)
            ramping = armed is not None and state == State.CLOSED and epoch == armed + 1

            def began() -> int:
                latest = changed_at_ms + period_ms
                return min(self._started.get(name, latest), latest)

            def active() -> bool:
                return ramping and period_ms > 0 and now_ms < began() + period_ms

            def status(**extra: object) -> RampStatus:
                fields: dict[str, object] = {"now_ms": now_ms, "epoch": epoch}
                if ramping:
                    fields.update(started_ms=began(), ends_ms=began() + period_ms)
                if active():
                    fields.update(active=True, in_flight=len(slots),
                                  limit=ramp_limit(policy.permitted_calls_in_half_open, max(0, now_ms - began()),
                                                   period_ms))
                return RampStatus.model_validate({**fields, **extra})

            if action == "arm":
                if state == State.HALF_OPEN and epoch == int(arg) and (armed is None or armed < epoch):
                    self._armed[name] = epoch
                    self._started.pop(name, None)
                    slots.clear()
                    return status(armed=True)
                return status()
            if action == "acquire":
                if not active():
                    slots.clear()
                    return status(granted=True)
                self._started.setdefault(name, now_ms)
                lapse = policy.max_wait_in_half_open * 1000
                for token, since in list(slots.items()):
                    if now_ms - since >= lapse:
                        del slots[token]
                limit = ramp_limit(policy.permitted_calls_in_half_open, max(0, now_ms - began()), period_ms)
                if limit is not None and len(slots) < limit:
                    slots[arg] = now_ms
                    return status(granted=True, slot=True)
                return status(granted=False)
            if action == "release":
                slots.pop(arg, None)
            return status()
