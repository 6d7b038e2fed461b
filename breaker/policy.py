"""Breaker policies: when a breaker trips and how it recovers.

The vocabulary is resilience4j's (sliding window, minimum calls, failure-rate and
slow-call-rate thresholds, wait in open state, permitted calls in half-open), so that
operators who know one breaker know this one.

A policy is stored in Redis next to the breaker's state. The stored policy wins over the
one a process was configured with, so an operator's live change (``Breakers.set_policy``,
later ``fusebox breaker set``) reaches every worker on its next call without a restart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TierName = Literal["core", "auxiliary"]


class BreakerPolicy(BaseModel):
    """When a breaker trips and how it recovers.

    Parameters:
      minimum_calls: calls the window must hold before any rate is judged; below it the
        breaker never trips, however many of those calls failed.
      failure_rate_threshold: fraction (0, 1] of failed calls (errors and timeouts) in the
        window at or above which the breaker trips.
      slow_call_duration: seconds after which a call counts as slow, even if it succeeded.
      slow_call_rate_threshold: fraction (0, 1] of slow calls at or above which it trips.
      window: length of the time-based sliding window in seconds, counted in 1-second
        buckets.
      wait_in_open: seconds the breaker stays OPEN before it lets probes through.
      wait_in_open_multiplier: growth of that wait for each trip that follows a failed
        recovery (1 keeps it constant); the wait is reset once the breaker closes.
      max_wait_in_open: cap on the grown wait, in seconds.
      permitted_calls_in_half_open: probe calls let through cluster-wide in HALF_OPEN;
        their outcomes decide CLOSED or OPEN again.
      max_wait_in_half_open: seconds after which a probe that never reported (the model
        hangs, or its worker died) sends the breaker back to OPEN; its permit is never
        handed to another caller while it may still run.
      call_timeout: seconds a guarded call may take; past it the call is a timeout (a
        failure). Enforcing the limit is the caller's job (Celery's time limits do it in
        workers); the breaker classifies what it is told.
      slow_start: seconds over which the fleet's concurrency on the model ramps up after a
        recovery (HALF_OPEN to CLOSED): the limit starts at ``permitted_calls_in_half_open``
        calls in flight cluster-wide and doubles each fifth of this period, then goes away.
        0 lets every worker back at once. See breaker.ramp.
      tier: the named tier this policy was derived from, for display only.
      reference_megapixels: the input size, in megapixels, up to which ``call_timeout`` and
        ``slow_call_duration`` apply as they are; a larger input gets both multiplied by
        its megapixels / this (a 36 MP page with 4 here: 9x), so that a big valid input is
        the caller's load, not the model's sickness. None (the default): input size is not
        considered. Callers that know their input's size ask :meth:`size_factor`.
      bypass_callers: callers allowed to send jobs past this breaker (fusebox routes them
        to a queue that is never paused, and runs them without asking the breaker or
        counting their outcome): for the rare caller that must reach the model even while
        it is sick, and accepts the risk.
      consecutive_failures_threshold: K trips CLOSED to OPEN after K failures (errors and
        timeouts) in a row in the current epoch, without waiting for ``minimum_calls``: a
        low-traffic model whose every call fails is cut off after K calls. A success (slow
        or not) ends the streak; IGNORED outcomes neither count nor end it; outcomes
        handed back after an outage do not count (their order is not known). None (the
        default): only the window's rates trip.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    minimum_calls: int = Field(20, ge=1, le=1_000_000)
    failure_rate_threshold: float = Field(0.5, gt=0.0, le=1.0)
    slow_call_duration: float = Field(10.0, gt=0.0)
    slow_call_rate_threshold: float = Field(1.0, gt=0.0, le=1.0)
    window: int = Field(60, ge=1, le=3600)
    wait_in_open: float = Field(30.0, ge=0.0)
    wait_in_open_multiplier: float = Field(1.0, ge=1.0, le=100.0)
    max_wait_in_open: float = Field(600.0, ge=0.0)
    permitted_calls_in_half_open: int = Field(3, ge=1, le=10_000)
    max_wait_in_half_open: float = Field(60.0, gt=0.0)
    call_timeout: float = Field(5.0, gt=0.0)
    slow_start: float = Field(5.0, ge=0.0, le=3600.0)
    tier: TierName | None = None
    reference_megapixels: float | None = Field(None, gt=0.0)
    bypass_callers: tuple[str, ...] = ()
    consecutive_failures_threshold: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> BreakerPolicy:
        if self.max_wait_in_open < self.wait_in_open:
            raise ValueError(
                f"max_wait_in_open ({self.max_wait_in_open}) must be >= wait_in_open ({self.wait_in_open})"
            )
        # A probe within its call_timeout must never be taken for a hung one (which
        # re-opens the breaker).
        if self.max_wait_in_half_open <= self.call_timeout:
            raise ValueError(
                f"max_wait_in_half_open ({self.max_wait_in_half_open}) must be longer than "
                f"call_timeout ({self.call_timeout})"
            )
        return self

    @classmethod
    def for_tier(cls, tier: TierName, **overrides: Any) -> BreakerPolicy:
        """The policy of a named tier, with per-breaker overrides.

        Parameters:
          tier: ``core`` (trips at 40 %, long and growing recovery) or ``auxiliary``
            (trips at 60 %, short timeouts, fast cutoff and quick retry).
          overrides: any policy field.
        """
        try:
            base = TIERS[tier]
        except KeyError:
            raise ValueError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}") from None
        # model_validate, not model_copy: overrides are checked like any other input.
        return cls.model_validate({**base.model_dump(), **overrides})

    def wait_after_trips(self, consecutive_trips: int) -> float:
        """Seconds to stay OPEN after the ``consecutive_trips``-th trip since the last close."""
        grown = self.wait_in_open * self.wait_in_open_multiplier ** max(consecutive_trips - 1, 0)
        return min(grown, self.max_wait_in_open)

    def size_factor(self, megapixels: float | None) -> float:
        """How many times ``call_timeout`` and ``slow_call_duration`` an input of
        ``megapixels`` is allowed: 1 up to ``reference_megapixels`` (or when either is
        unknown), then in proportion to the input's size."""
        if self.reference_megapixels is None or megapixels is None:
            return 1.0
        return max(1.0, megapixels / self.reference_megapixels)

    def to_redis(self) -> dict[str, str]:
        """Flat string fields, as stored in the policy hash and read by the Lua scripts."""
        flat = {}
        for k, v in self.model_dump().items():
            flat[k] = ",".join(v) if isinstance(v, (list, tuple)) else ("" if v is None else str(v))
        return flat

    @classmethod
    def from_redis(cls, fields: dict[str, str] | dict[bytes, bytes]) -> BreakerPolicy:
        """The inverse of :meth:`to_redis`; unknown fields (from a newer version) are dropped."""
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        known = {k: v for k, v in decoded.items() if k in cls.model_fields}
        for optional in ("tier", "reference_megapixels", "consecutive_failures_threshold"):
            if known.get(optional) == "":
                known[optional] = None
        if "bypass_callers" in known:
            known["bypass_callers"] = tuple(c for c in known["bypass_callers"].split(",") if c)
        return cls.model_validate(known)


TIERS: dict[str, BreakerPolicy] = {
    # A model the product cannot do without: trip earlier, recover carefully.
    "core": BreakerPolicy(
        failure_rate_threshold=0.4,
        slow_call_rate_threshold=0.8,
        wait_in_open=60.0,
        wait_in_open_multiplier=2.0,
        max_wait_in_open=900.0,
        permitted_calls_in_half_open=5,
        max_wait_in_half_open=120.0,
        call_timeout=30.0,
        slow_call_duration=10.0,
        tier="core",
    ),
    # A nice-to-have model: tolerate more noise, but cut off fast and retry soon.
    "auxiliary": BreakerPolicy(
        failure_rate_threshold=0.6,
        slow_call_rate_threshold=0.6,
        minimum_calls=10,
        window=30,
        wait_in_open=15.0,
        max_wait_in_open=60.0,
        permitted_calls_in_half_open=3,
        max_wait_in_half_open=30.0,
        call_timeout=5.0,
        slow_call_duration=2.0,
        tier="auxiliary",
    ),
}
