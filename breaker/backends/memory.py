"""A breaker store in this process's memory: for unit tests, and the local fail-safe that a
worker decides with while Redis is unreachable."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from breaker.backend import BreakerBackend, RecordRequest
from breaker.events import BreakerEvent
from breaker.machine import BreakerRecord, Machine, view_of
from breaker.policy import BreakerPolicy
from breaker.ramp import LocalRamps, RampStatus
from breaker.state import (
    Admission,
    BreakerSnapshot,
    Control,
    RecordResult,
    State,
    StateView,
    check_name,
)


def wall_anchored_monotonic() -> Callable[[], float]:
    """A clock that never jumps (monotonic) but reads like wall time, so that local events
    carry believable timestamps."""
    anchor = time.time() - time.monotonic()
    return lambda: time.monotonic() + anchor


class InMemoryBackend(BreakerBackend):
    """Breakers in a dict, behind one lock; the same rules as the Redis scripts.

    Parameters:
      clock: seconds, as a float; defaults to a monotonic clock anchored to wall time.
      on_event: called with every transition and policy event, under no lock.
      history_size: how many events :meth:`history` keeps.
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        on_event: Callable[[BreakerEvent], None] | None = None,
        history_size: int = 1000,
    ) -> None:
        self._clock = clock or wall_anchored_monotonic()
        self._on_event = on_event
        self._lock = threading.RLock()
        self._records: dict[str, BreakerRecord] = {}
        self._policies: dict[str, BreakerPolicy] = {}
        self._history: deque[BreakerEvent] = deque(maxlen=history_size)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _machine(
        self, name: str, policy: BreakerPolicy, now_ms: int, pending: list[BreakerEvent], create: bool = True
    ) -> Machine:
        record = self._records.get(name)
        if record is None and not create:
            # A read of a breaker never used: a fresh CLOSED one, not kept (as snapshot.lua
            # and ramp.lua answer; the breaker's incarnation starts with its first use).
            record = BreakerRecord(name=check_name(name), incarnation=0, changed_at_ms=0)
        elif record is None:
            record = self._records[name] = BreakerRecord(
                name=check_name(name), incarnation=now_ms, changed_at_ms=now_ms
            )
        return Machine(record, self._policies.get(name, policy), pending.append, local=True)

    def _publish(self, pending: list[BreakerEvent]) -> None:
        # Listeners run outside the lock: one that calls back into the backend must not
        # deadlock, and a slow one must not hold up other callers.
        for event in pending:
            self._history.append(event)
            if self._on_event is not None:
                self._on_event(event)

    def admit(self, name: str, policy: BreakerPolicy, who: str) -> Admission:
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            result = self._machine(name, policy, now, pending).admit(now, who)
        self._publish(pending)
        return result

    def advance(self, name: str, policy: BreakerPolicy, who: str) -> StateView:
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            result = self._machine(name, policy, now, pending).advance(now, who)
        self._publish(pending)
        return result

    def record(self, request: RecordRequest) -> RecordResult:
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            m = self._machine(request.name, request.policy, now, pending)
            result = m.record_outcome(now, request.ticket, request.outcome, request.duration, request.who)
        self._publish(pending)
        return result

    def control(
        self, name: str, policy: BreakerPolicy, action: Control, who: str, reason: str = ""
    ) -> BreakerEvent:
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            m = self._machine(name, policy, now, pending)
            event = m.unchanged(action, now, who)
            if event is None:
                event = m.transition(action.target, reason or f"operator: {action.value}", now, who)
        self._publish(pending)
        return event

    def seed(self, name: str, policy: BreakerPolicy, state: State, open_for: float, who: str) -> None:
        """Starts a local breaker where the shared one was last seen, so that losing Redis
        while a model is sick does not reopen the floodgates: OPEN stays OPEN for what was
        left of its wait, the operator states stay as they were."""
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            m = self._machine(name, policy, now, pending)
            if state in (State.OPEN, State.HALF_OPEN):
                m.transition(State.OPEN, "seeded from the shared breaker", now, who)
                m.record.open_until_ms = now + int(max(open_for, 0.0) * 1000)
            elif state != State.CLOSED:
                m.transition(state, "seeded from the shared breaker", now, who)
        self._publish(pending)

    def snapshot(self, name: str, policy: BreakerPolicy) -> BreakerSnapshot:
        with self._lock:
            now = self._now_ms()
            m = self._machine(name, policy, now, [], create=False)
            r = m.record
            return BreakerSnapshot(
                name=name,
                changed_at_ms=r.changed_at_ms,
                consecutive_trips=r.consecutive_trips,
                window=r.window.stats(now, m.policy.window).model_copy(update={"minimum_calls": m.policy.minimum_calls}),
                probes_outstanding=len(r.permits),
                probe_calls=r.probe_calls,
                probe_failures=r.probe_failures,
                consecutive_failures=r.streak,
                totals=dict(r.totals),
                policy=m.policy,
                local=True,
                **m.view(now).model_dump(),
            )

    def history_buckets(self, name: str, hours: int = 24) -> dict[int, tuple[int, int, int]]:
        """As :meth:`RedisBackend.history_buckets`."""
        with self._lock:
            record = self._records.get(name)
            since = self._now_ms() // 1000 - hours * 3600
            return {} if record is None else {s: b for s, b in record.history.buckets().items() if s >= since}

    def views(self, names: Sequence[str]) -> tuple[int, dict[str, StateView]]:
        with self._lock:
            now = self._now_ms()
            return now, {name: view_of(self._records[name], now) for name in names if name in self._records}

    def get_policy(self, name: str) -> BreakerPolicy | None:
        with self._lock:
            return self._policies.get(name)

    def set_policy(self, name: str, policy: BreakerPolicy, who: str) -> None:
        self._change_policy(name, policy, policy, who)

    def clear_policy(self, name: str, who: str, default: BreakerPolicy | None = None) -> None:
        self._change_policy(name, None, default or BreakerPolicy(), who)

    def _change_policy(self, name: str, stored: BreakerPolicy | None, default: BreakerPolicy, who: str) -> None:
        """Stores (or drops) a policy and, like ``lua/policy.lua``, lets a HALF_OPEN breaker
        decide at once if its reported probes already reach the new permitted count."""
        pending: list[BreakerEvent] = []
        with self._lock:
            now = self._now_ms()
            if stored is None:
                self._policies.pop(name, None)
            else:
                self._policies[name] = stored
            pending.append(BreakerEvent(kind="policy", breaker=name, who=who, at_ms=now, local=True))
            m = self._machine(name, default, now, pending)
            if m.record.state == State.HALF_OPEN:
                m.behaviour.advance(m, now, who)
        self._publish(pending)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        with self._lock:
            events = [e for e in self._history if name is None or e.breaker == name]
        return events[-count:]

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by one of its threads."""
        self._lock = threading.RLock()

    def ramp(self, name: str, policy: BreakerPolicy, action: str, arg: str = "") -> RampStatus:
        """One slow-start action, by the rules of ``ramp.lua`` (see breaker.ramp).

        Parameters:
          name: the breaker.
          policy: the configured policy (a stored one wins).
          action: ``arm``, ``acquire``, ``release`` or ``status``.
          arg: the HALF_OPEN epoch for ``arm``, the slot token for ``acquire``/``release``.
        """
        ramps = self.__dict__.get("_ramps")
        if ramps is None:
            ramps = self.__dict__["_ramps"] = LocalRamps()
        with self._lock:
            now = self._now_ms()
            if name not in self._records:
                return RampStatus(now_ms=now)  # as ramp.lua answers for a breaker never used
            m = self._machine(name, policy, now, [])
            view = m.view(now)
            effective, changed_at = m.policy, m.record.changed_at_ms
        return ramps.run(name, effective, view.state, view.epoch, changed_at, now, action, arg)

    def forget(self) -> None:
        """Drops every breaker (a process rejoining the shared store starts clean next time)."""
        with self._lock:
            self._records.clear()
            self._policies.clear()
