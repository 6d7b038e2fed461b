"""The states a breaker can be in, the outcomes a call can have, and the records that
cross the backend boundary (admissions, tickets, record results, snapshots)."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from breaker.policy import BreakerPolicy


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def check_name(name: str) -> str:
    """Returns ``name`` if it can name a breaker (it becomes part of Redis keys and queue
    names: letters, digits, ``_ . -``, at most 64), else raises ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid breaker name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class State(StrEnum):
    """A breaker's state.

    CLOSED, OPEN and HALF_OPEN are the automatic cycle. The operator states hold until an
    operator resets the breaker: FORCED_OPEN rejects every call, DISABLED admits every
    call and records nothing, METRICS_ONLY admits every call, records it and never trips.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"

    @property
    def admits_everything(self) -> bool:
        """True where admission needs no decision from the store: any call may run."""
        return self in (State.CLOSED, State.DISABLED, State.METRICS_ONLY)

    @property
    def rejects(self) -> bool:
        """True where calls are turned away (HALF_OPEN turns away all but its probes)."""
        return self in (State.OPEN, State.FORCED_OPEN)


class Outcome(StrEnum):
    """What became of a guarded call.

    SUCCESS and FAILURE are what the caller saw. TIMEOUT is a failure that ran past
    ``call_timeout``. SLOW is a success that took ``slow_call_duration`` or longer (the
    backend derives it from the duration, a caller may also state it). IGNORED is a call
    that says nothing about the model's health (the caller's bad input): it is counted in
    the totals and frees a probe permit, but never enters the window.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    SLOW = "slow"
    IGNORED = "ignored"

    @property
    def is_failure(self) -> bool:
        return self in (Outcome.FAILURE, Outcome.TIMEOUT)


class Control(StrEnum):
    """Operator actions on a breaker."""

    TRIP = "trip"  # to OPEN, recovering by itself after wait_in_open
    FORCE_OPEN = "force_open"  # to FORCED_OPEN, until reset
    RESET = "reset"  # to CLOSED with an empty window
    DISABLE = "disable"  # to DISABLED
    METRICS_ONLY = "metrics_only"  # to METRICS_ONLY

    @property
    def target(self) -> State:
        return {
            Control.TRIP: State.OPEN,
            Control.FORCE_OPEN: State.FORCED_OPEN,
            Control.RESET: State.CLOSED,
            Control.DISABLE: State.DISABLED,
            Control.METRICS_ONLY: State.METRICS_ONLY,
        }[self]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Ticket(_Frozen):
    """Proof of admission, handed back with the call's outcome.

    Parameters:
      breaker: the breaker's name.
      epoch: the breaker's epoch at admission. Every transition starts a new epoch, and an
        outcome whose epoch is no longer current is counted as stale, never judged: a call
        admitted before a trip cannot push the recovered breaker back open.
      incarnation: when the breaker's record was created in its store; a store that lost
        its data (a Redis restart without persistence) makes a new one.
      state: the state that admitted the call.
      permit: the probe permit in HALF_OPEN, else None.
      local: True when the decision came from this process's local breaker because the
        shared store was unreachable.
    """

    breaker: str
    epoch: int
    incarnation: int = 0
    state: State
    permit: int | None = None
    local: bool = False


class StateView(_Frozen):
    """A breaker's state as its store saw it at one instant.

    Parameters:
      state: the state.
      epoch, incarnation: as in :class:`Ticket`.
      open_until_ms: store time (ms) until which an OPEN breaker rejects; 0 otherwise.
      now_ms: the store's clock at that instant, so that callers can estimate it without
        trusting their own wall clock.
    """

    state: State
    epoch: int
    incarnation: int = 0
    open_until_ms: int = 0
    now_ms: int


class Admission(StateView):
    """A backend's answer to "may this call run?" (the state is the one after deciding:
    admitting may move OPEN to HALF_OPEN).

    Parameters:
      admitted: whether the call may run.
      ticket: present when admitted.
      retry_after: seconds until the breaker may admit again, when rejected and known.
    """

    admitted: bool
    ticket: Ticket | None = None
    retry_after: float | None = None


class WindowStats(_Frozen):
    """What the sliding window holds right now.

    Parameters:
      calls, failures, slow: the window's counts.
      minimum_calls: the policy's ``minimum_calls`` when these figures are shown to a
        person (snapshots); 0 where unknown. Below it the rates are *not judged*: the
        breaker cannot trip on them, and :attr:`judged_failure_rate` is None where
        resilience4j reports -1 (None is what JSON and Prometheus can leave out; -1 would
        read as a rate).
    """

    calls: int = 0
    failures: int = 0
    slow: int = 0
    minimum_calls: int = 0

    @property
    def judged(self) -> bool:
        """Whether the window holds enough calls for its rates to count."""
        return self.calls > 0 and self.calls >= self.minimum_calls

    @property
    def judged_failure_rate(self) -> float | None:
        return self.failure_rate if self.judged else None

    @property
    def judged_slow_rate(self) -> float | None:
        return self.slow_rate if self.judged else None

    @property
    def judgement(self) -> str:
        """"not judged: 3 of 5 calls" below the minimum, else "" (nothing to add)."""
        return "" if self.judged else f"not judged: {self.calls} of {max(1, self.minimum_calls)} calls"

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


class RecordResult(StateView):
    """A backend's answer to "this call ended so" (the state is the one after the outcome:
    it may have tripped or recovered).

    Parameters:
      applied: whether the outcome entered the window or decided a probe; False for stale
        epochs, unknown permits, ignored calls and DISABLED breakers.
      slow: whether the call counted as slow.
    """

    applied: bool
    slow: bool = False


class BreakerSnapshot(StateView):
    """Everything an operator wants to see about one breaker, read in one atomic step.

    Parameters:
      name: the breaker's name.
      changed_at_ms: store time of the last transition.
      consecutive_trips: trips since the breaker was last CLOSED (drives the growing wait).
      window: the sliding window's figures now.
      probes_outstanding: HALF_OPEN probe permits handed out and not yet reported.
      probe_calls, probe_failures: HALF_OPEN probe outcomes reported so far.
      consecutive_failures: failures in a row in this epoch (the
        ``consecutive_failures_threshold`` streak).
      totals: lifetime counts by outcome (success, slow, failure, timeout, ignored), of
        stale outcomes, rejections, granted and reclaimed probe permits, and of transitions
        into each state (``to_open``, ``to_closed``...).
      policy: the effective policy (the stored one, else the configured default).
      local: True when read from this process's local breaker (store unreachable).
    """

    name: str
    changed_at_ms: int = 0
    consecutive_trips: int = 0
    window: WindowStats = Field(default_factory=WindowStats)
    probes_outstanding: int = 0
    probe_calls: int = 0
    probe_failures: int = 0
    consecutive_failures: int = 0
    totals: dict[str, int] = Field(default_factory=dict)
    policy: BreakerPolicy
    local: bool = False

    @property
    def retry_after(self) -> float | None:
        """Seconds until an OPEN breaker lets probes through; None in other states."""
        if self.state != State.OPEN:
            return None
        return max(0.0, (self.open_until_ms - self.now_ms) / 1000)
