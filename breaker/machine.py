"""The breaker's state machine in Python, one class per state (the state pattern).

The in-memory backend runs it; the Redis backend runs the same rules in Lua
(``backends/lua/``). The scenario table in ``tests/breaker/test_scenarios.py`` runs on both and
the hypothesis model in ``tests/breaker/test_redis_model.py`` checks the Lua against an
independent reference, so the two cannot drift apart unnoticed.

Rules, in short:

* CLOSED admits. An outcome enters the window; once the window holds ``minimum_calls``
  calls and the failure rate or slow-call rate reaches its threshold, the breaker trips.
  With ``consecutive_failures_threshold`` K, K failures in a row (of this epoch) trip it
  too, however few calls the window holds; a success or slow success ends the streak.
* OPEN rejects until ``open_until``; the first admission after it moves to HALF_OPEN.
* HALF_OPEN hands out ``permitted_calls_in_half_open`` probe permits. When that many probes
  have reported, the probes' rates decide: CLOSED, or OPEN again with a longer wait. An
  IGNORED probe gives its permit back; a probe not reported within
  ``max_wait_in_half_open`` sends the breaker back to OPEN (never a new probe while it
  may still run: at most N probes in flight).
* Every transition starts a new epoch and empties the window; an outcome carrying an old
  epoch is stale: counted, never judged.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from breaker.events import BreakerEvent
from breaker.policy import BreakerPolicy
from breaker.state import Admission, Control, Outcome, RecordResult, State, StateView, Ticket, WindowStats
from breaker.shadow import History, would_trip
from breaker.window import SlidingWindow


@dataclass
class BreakerRecord:
    """The mutable state of one breaker (what Redis keeps in its hashes)."""

    name: str
    incarnation: int
    state: State = State.CLOSED
    epoch: int = 0
    changed_at_ms: int = 0
    open_until_ms: int = 0
    consecutive_trips: int = 0
    permit_seq: int = 0
    permits: dict[int, int] = field(default_factory=dict)  # permit id -> granted at (ms)
    probe_calls: int = 0
    probe_failures: int = 0
    probe_slow: int = 0
    streak: int = 0  # FAILURE/TIMEOUT outcomes in a row in this epoch (CLOSED, METRICS_ONLY)
    window: SlidingWindow = field(default_factory=SlidingWindow)
    totals: Counter[str] = field(default_factory=Counter)
    shadow: dict[str, int] = field(default_factory=dict)  # METRICS_ONLY: rates above, by epoch
    history: History = field(default_factory=History)  # 24 h of 1-second buckets (what-if)


def outcome_counter(outcome: Outcome, slow: bool) -> str:
    """The lifetime counter an outcome adds to: a slow success counts as ``slow``."""
    if outcome == Outcome.SUCCESS and slow:
        return Outcome.SLOW.value
    return outcome.value


def trip_reason(stats: WindowStats, policy: BreakerPolicy, what: str) -> str | None:
    """Why ``stats`` trip the breaker under ``policy``, or None when they don't."""
    if stats.failure_rate >= policy.failure_rate_threshold:
        return (
            f"{what} failure rate {stats.failure_rate:.1%} >= {policy.failure_rate_threshold:.1%}"
            f" over {stats.calls} calls"
        )
    if stats.slow_rate >= policy.slow_call_rate_threshold:
        return (
            f"{what} slow-call rate {stats.slow_rate:.1%} >= {policy.slow_call_rate_threshold:.1%}"
            f" over {stats.calls} calls"
        )
    return None


def streak_reason(streak: int, policy: BreakerPolicy) -> str | None:
    """Why ``streak`` failures in a row trip the breaker, or None (no threshold, or below)."""
    k = policy.consecutive_failures_threshold
    if k is not None and streak >= k:
        return f"{streak} consecutive failures >= {k}"
    return None


def view_of(record: BreakerRecord, now_ms: int) -> StateView:
    return StateView(
        state=record.state,
        epoch=record.epoch,
        incarnation=record.incarnation,
        open_until_ms=record.open_until_ms,
        now_ms=now_ms,
    )


class Machine:
    """Runs one breaker's record through its states.

    Parameters:
      record: the breaker's mutable state.
      policy: the effective policy for this step.
      emit: called with every transition event.
      local: marks tickets and events as coming from a process-local breaker.
    """

    def __init__(
        self,
        record: BreakerRecord,
        policy: BreakerPolicy,
        emit: Callable[[BreakerEvent], None],
        local: bool,
    ) -> None:
        self.record = record
        self.policy = policy
        self.emit = emit
        self.local = local

    @property
    def behaviour(self) -> StateBehaviour:
        return BEHAVIOURS[self.record.state]

    def view(self, now_ms: int) -> StateView:
        return view_of(self.record, now_ms)

    def admit(self, now_ms: int, who: str) -> Admission:
        return self.behaviour.admit(self, now_ms, who)

    def advance(self, now_ms: int, who: str) -> StateView:
        """Moves a due OPEN breaker to HALF_OPEN and a HALF_OPEN one with an overdue probe back to OPEN, without
        asking for a permit: what a paused fleet's timer calls."""
        self.behaviour.advance(self, now_ms, who)
        return self.view(now_ms)

    def record_outcome(
        self, now_ms: int, ticket: Ticket, outcome: Outcome, duration: float, who: str
    ) -> RecordResult:
        r = self.record
        slow = outcome == Outcome.SLOW or (
            outcome != Outcome.IGNORED and duration * 1000 >= self.policy.slow_call_duration * 1000
        )
        applied = False
        if r.state != State.DISABLED:
            r.totals[outcome_counter(outcome, slow)] += 1
            if ticket.epoch != r.epoch or ticket.incarnation != r.incarnation:
                r.totals["stale"] += 1
            else:
                applied = self.behaviour.record(self, now_ms, ticket, outcome, slow, who)
        view = self.view(now_ms)
        return RecordResult(applied=applied, slow=slow, **view.model_dump())

    def admitted(self, now_ms: int, permit: int | None = None) -> Admission:
        r = self.record
        ticket = Ticket(
            breaker=r.name,
            epoch=r.epoch,
            incarnation=r.incarnation,
            state=r.state,
            permit=permit,
            local=self.local,
        )
        return Admission(admitted=True, ticket=ticket, **self.view(now_ms).model_dump())

    def rejected(self, now_ms: int) -> Admission:
        r = self.record
        r.totals["rejected"] += 1
        retry_after = None
        if r.state == State.OPEN:
            retry_after = max(0.0, (r.open_until_ms - now_ms) / 1000)
        return Admission(admitted=False, retry_after=retry_after, **self.view(now_ms).model_dump())

    def unchanged(self, action: Control, now_ms: int, who: str) -> BreakerEvent | None:
        """The answer to an operator's action that would change nothing (trip an OPEN
        breaker, disable a DISABLED one...): an event that is neither published nor kept,
        with the epoch unchanged, so that no call in flight turns stale for nothing (like
        resilience4j, which publishes no event for such an "internal" transition). None
        when the action changes something; a reset always does (it empties the window,
        like resilience4j's reset), and so does a trip of an OPEN breaker whose wait is over
        (it would let probes through on the next call: the trip starts a new wait)."""
        r = self.record
        if action == Control.RESET or r.state != action.target:
            return None
        if r.state == State.OPEN and now_ms >= r.open_until_ms:
            return None
        return BreakerEvent(
            breaker=r.name, from_state=r.state, to_state=r.state, reason=f"already {r.state.value}: nothing changed",
            at_ms=now_ms, epoch=r.epoch, incarnation=r.incarnation, who=who,
            window=r.window.stats(now_ms, self.policy.window), open_until_ms=r.open_until_ms,
            consecutive_trips=r.consecutive_trips, local=self.local,
        )

    def transition(self, to: State, reason: str, now_ms: int, who: str) -> BreakerEvent:
        r = self.record
        stats = r.window.stats(now_ms, self.policy.window)
        if r.state == State.HALF_OPEN:
            # A HALF_OPEN decision is about the probes, so report their figures.
            stats = WindowStats(calls=r.probe_calls, failures=r.probe_failures, slow=r.probe_slow)
        from_state = r.state
        r.totals[f"to_{to.value}"] += 1
        r.epoch += 1
        r.state = to
        r.changed_at_ms = now_ms
        r.permits.clear()
        r.probe_calls = r.probe_failures = r.probe_slow = r.streak = 0
        r.window.clear()
        r.open_until_ms = 0
        if to == State.OPEN:
            r.consecutive_trips += 1
            wait = self.policy.wait_after_trips(r.consecutive_trips)
            r.open_until_ms = now_ms + math.floor(wait * 1000 + 0.5)
        elif to == State.CLOSED:
            r.consecutive_trips = 0
        event = BreakerEvent(
            breaker=r.name,
            from_state=from_state,
            to_state=to,
            reason=reason,
            at_ms=now_ms,
            epoch=r.epoch,
            incarnation=r.incarnation,
            who=who,
            window=stats,
            open_until_ms=r.open_until_ms,
            consecutive_trips=r.consecutive_trips,
            local=self.local,
        )
        self.emit(event)
        return event


class StateBehaviour(ABC):
    """What one state does with admissions and outcomes."""

    state: ClassVar[State]

    @abstractmethod
    def admit(self, m: Machine, now_ms: int, who: str) -> Admission: ...

    def advance(self, m: Machine, now_ms: int, who: str) -> None:
        """Time-driven moves; most states have none."""

    def record(
        self, m: Machine, now_ms: int, ticket: Ticket, outcome: Outcome, slow: bool, who: str
    ) -> bool:
        """Judges an outcome of the current epoch; returns whether it was applied."""
        return False


class Closed(StateBehaviour):
    """CLOSED: every call admitted; the sliding window decides the trip."""
    state = State.CLOSED
    trips = True

    def admit(self, m: Machine, now_ms: int, who: str) -> Admission:
        return m.admitted(now_ms)

    def record(
        self, m: Machine, now_ms: int, ticket: Ticket, outcome: Outcome, slow: bool, who: str
    ) -> bool:
        if outcome == Outcome.IGNORED:
            return False
        r = m.record
        stats = r.window.add(now_ms, m.policy.window, failures=int(outcome.is_failure), slow=int(slow))
        r.history.add(now_ms, failure=outcome.is_failure, slow=slow)
        r.streak = r.streak + 1 if outcome.is_failure else 0
        if self.trips:
            reason = None
            if stats.calls >= m.policy.minimum_calls:
                reason = trip_reason(stats, m.policy, "window")
            if reason is None:
                reason = streak_reason(r.streak, m.policy)
            if reason is not None:
                m.transition(State.OPEN, reason, now_ms, who)
        return True


class MetricsOnly(Closed):
    """Records like CLOSED and reports the figures, but never trips: it says when it would
    have (a ``would_trip`` event per crossing of a threshold, breaker/shadow.py)."""

    state = State.METRICS_ONLY
    trips = False

    def record(
        self, m: Machine, now_ms: int, ticket: Ticket, outcome: Outcome, slow: bool, who: str
    ) -> bool:
        applied = super().record(m, now_ms, ticket, outcome, slow, who)
        if applied:
            would_trip(m, now_ms, who)
        return applied


class Open(StateBehaviour):
    """OPEN: every call refused until ``wait_in_open`` has passed, then HALF_OPEN."""
    state = State.OPEN

    def admit(self, m: Machine, now_ms: int, who: str) -> Admission:
        self.advance(m, now_ms, who)
        if m.record.state == State.HALF_OPEN:
            return BEHAVIOURS[State.HALF_OPEN].admit(m, now_ms, who)
        return m.rejected(now_ms)

    def advance(self, m: Machine, now_ms: int, who: str) -> None:
        if now_ms >= m.record.open_until_ms:
            m.transition(State.HALF_OPEN, "wait in open state elapsed", now_ms, who)


class HalfOpen(StateBehaviour):
    """HALF_OPEN: ``permitted_calls_in_half_open`` probes decide CLOSED or OPEN again."""
    state = State.HALF_OPEN

    def admit(self, m: Machine, now_ms: int, who: str) -> Admission:
        self.advance(m, now_ms, who)
        if m.record.state != State.HALF_OPEN:
            return BEHAVIOURS[m.record.state].admit(m, now_ms, who)
        r = m.record
        if len(r.permits) + r.probe_calls < m.policy.permitted_calls_in_half_open:
            r.permit_seq += 1
            r.permits[r.permit_seq] = now_ms
            r.totals["probes_granted"] += 1
            return m.admitted(now_ms, permit=r.permit_seq)
        return m.rejected(now_ms)

    def advance(self, m: Machine, now_ms: int, who: str) -> None:
        r = m.record
        lapse_ms = m.policy.max_wait_in_half_open * 1000
        lapsed = sum(1 for granted_at in r.permits.values() if now_ms - granted_at >= lapse_ms)
        if lapsed:
            # A probe that outlived its wait: the model hangs (or its worker died). Back to
            # OPEN, never a replacement probe while the first may still run.
            r.totals["reclaimed"] += lapsed
            m.transition(State.OPEN, f"{lapsed} probe(s) not reported within max_wait_in_half_open "
                         f"({m.policy.max_wait_in_half_open:g}s)", now_ms, who)
            return
        # An operator may have lowered permitted_calls_in_half_open to or below the probes
        # already reported: no outcome would come to decide, so decide now.
        self.decide(m, now_ms, who)

    @staticmethod
    def decide(m: Machine, now_ms: int, who: str) -> None:
        """CLOSED or OPEN again once as many probes have reported as the policy permits."""
        r = m.record
        if r.state != State.HALF_OPEN or r.probe_calls < m.policy.permitted_calls_in_half_open:
            return
        probes = WindowStats(calls=r.probe_calls, failures=r.probe_failures, slow=r.probe_slow)
        reason = trip_reason(probes, m.policy, "probe")
        if reason is not None:
            m.transition(State.OPEN, reason, now_ms, who)
        else:
            m.transition(
                State.CLOSED, f"{probes.calls - probes.failures} of {probes.calls} probes succeeded", now_ms, who
            )

    def record(
        self, m: Machine, now_ms: int, ticket: Ticket, outcome: Outcome, slow: bool, who: str
    ) -> bool:
        r = m.record
        if ticket.permit is None or ticket.permit not in r.permits:
            r.totals["stale"] += 1  # a reclaimed permit reporting late
            return False
        del r.permits[ticket.permit]
        if outcome == Outcome.IGNORED:
            return False  # the permit goes back to the pool
        r.probe_calls += 1
        r.probe_failures += int(outcome.is_failure)
        r.probe_slow += int(slow)
        self.decide(m, now_ms, who)
        return True


class ForcedOpen(StateBehaviour):
    """FORCED_OPEN: every call refused until an operator resets the breaker."""
    state = State.FORCED_OPEN

    def admit(self, m: Machine, now_ms: int, who: str) -> Admission:
        return m.rejected(now_ms)


class Disabled(StateBehaviour):
    """DISABLED: every call admitted, nothing recorded."""
    state = State.DISABLED

    def admit(self, m: Machine, now_ms: int, who: str) -> Admission:
        return m.admitted(now_ms)


BEHAVIOURS: dict[State, StateBehaviour] = {
    b.state: b for b in (Closed(), MetricsOnly(), Open(), HalfOpen(), ForcedOpen(), Disabled())
}
