"""METRICS_ONLY as a shadow of a policy, and the recorded history that lets an operator
replay the past against another one (``lua/shadow.lua`` is the same in Lua).

resilience4j publishes a failure-rate-exceeded and a slow-call-rate-exceeded event in
METRICS_ONLY; fusebox does the same, once per crossing of a threshold: a ``would_trip``
event (stream, pub/sub, listeners, the alert service), and the lifetime counter
``would_trip_<rate>`` behind ``fusebox_breaker_would_trip_total{model,reason}``. An operator
can run a new policy in METRICS_ONLY for a day and see how often it would have tripped
before enforcing it.

Every outcome that enters a window is also kept 24 h in 1-second buckets
(:class:`History`), which ``fusebox breaker what-if`` replays (breaker/whatif.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from breaker.events import BreakerEvent
from breaker.policy import BreakerPolicy
from breaker.state import WindowStats

if TYPE_CHECKING:
    from breaker.machine import Machine

#: How long the per-second history is kept (seconds).
HISTORY_SECONDS = 24 * 3600

#: The rates a shadow watches: label, words, field of WindowStats, policy threshold.
SHADOW_RATES = (
    ("failure_rate", "failure rate", "failure_rate", "failure_rate_threshold"),
    ("slow_call_rate", "slow-call rate", "slow_rate", "slow_call_rate_threshold"),
)


def crossings(above: dict[str, int], epoch: int, stats: WindowStats, policy: BreakerPolicy) -> list[tuple[str, str]]:
    """The thresholds the window has just crossed from below, as (rate label, reason).

    ``above`` maps a rate label to the epoch in which it crossed and is updated here: a rate
    is reported again only after it was judged below its threshold (or after a transition).
    Below ``minimum_calls`` nothing is judged and nothing changes.
    """
    if stats.calls < policy.minimum_calls:
        return []
    new = []
    for label, words, field, threshold in SHADOW_RATES:
        value, limit = getattr(stats, field), getattr(policy, threshold)
        if value >= limit:
            if above.get(label) != epoch:
                above[label] = epoch
                new.append((label, f"would trip: window {words} {value:.1%} >= {limit:.1%} over {stats.calls} calls"))
        elif above.get(label) == epoch:
            del above[label]
    return new


def would_trip(m: Machine, now_ms: int, who: str) -> None:
    """After an outcome entered a METRICS_ONLY window: counts and emits each new crossing."""
    r = m.record
    stats = r.window.stats(now_ms, m.policy.window)
    for label, reason in crossings(r.shadow, r.epoch, stats, m.policy):
        r.totals[f"would_trip_{label}"] += 1
        m.emit(BreakerEvent(
            kind="would_trip", breaker=r.name, from_state=r.state, to_state=r.state, reason=reason, at_ms=now_ms,
            epoch=r.epoch, incarnation=r.incarnation, who=who, window=stats,
            consecutive_trips=r.consecutive_trips, local=m.local,
        ))


class History:
    """Calls, failures and slow calls per second of store time, for the last 24 h."""

    def __init__(self) -> None:
        self.seconds: dict[int, list[int]] = {}

    def add(self, now_ms: int, *, failure: bool, slow: bool) -> None:
        second = now_ms // 1000
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self.seconds[second] = [0, 0, 0]
            oldest = second - HISTORY_SECONDS
            if next(iter(self.seconds)) < oldest:  # dicts keep insertion order: oldest first
                for s in [s for s in self.seconds if s < oldest]:
                    del self.seconds[s]
        bucket[0] += 1
        bucket[1] += int(failure)
        bucket[2] += int(slow)

    def buckets(self) -> dict[int, tuple[int, int, int]]:
        return {s: (c, f, sl) for s, (c, f, sl) in sorted(self.seconds.items())}
