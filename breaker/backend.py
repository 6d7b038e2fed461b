"""The interface every breaker store implements (Redis for the fleet, memory for tests and
for the local fail-safe)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from breaker.events import BreakerEvent
from breaker.policy import BreakerPolicy
from breaker.state import Admission, BreakerSnapshot, Control, Outcome, RecordResult, StateView, Ticket


class RecordRequest(NamedTuple):
    """One outcome to record.

    Parameters:
      name: the breaker's name.
      policy: the caller's configured policy, used when the store holds none.
      ticket: the ticket the call was admitted with.
      outcome: what became of the call.
      duration: how long it ran, in seconds.
      who: the reporting process (``host:pid``).

    A named tuple: one is made for every guarded call, on the caller's thread.
    """

    name: str
    policy: BreakerPolicy
    ticket: Ticket
    outcome: Outcome
    duration: float
    who: str


class BreakerBackend(ABC):
    """Where breakers live and where their decisions are taken, atomically.

    Every method that takes a ``policy`` uses it only when the store holds no policy for
    that breaker: a stored policy (an operator's live change) always wins.
    """

    @abstractmethod
    def admit(self, name: str, policy: BreakerPolicy, who: str) -> Admission:
        """Decides whether one call may run; in HALF_OPEN hands out a probe permit."""

    @abstractmethod
    def advance(self, name: str, policy: BreakerPolicy, who: str) -> StateView:
        """Applies time-driven moves (OPEN to HALF_OPEN when due, lapsed permits back) without
        admitting anything. Idempotent: any number of processes may call it."""

    @abstractmethod
    def record(self, request: RecordRequest) -> RecordResult:
        """Records one outcome and takes any transition it causes."""

    def record_many(self, requests: Sequence[RecordRequest]) -> list[RecordResult]:
        """Records several outcomes, each atomically, in order."""
        return [self.record(r) for r in requests]

    @abstractmethod
    def control(
        self, name: str, policy: BreakerPolicy, action: Control, who: str, reason: str = ""
    ) -> BreakerEvent:
        """An operator's action: trip, force open, reset, disable, metrics only."""

    @abstractmethod
    def snapshot(self, name: str, policy: BreakerPolicy) -> BreakerSnapshot:
        """State, window figures, probes and totals of one breaker, read atomically."""

    @abstractmethod
    def views(self, names: Sequence[str]) -> tuple[int, dict[str, StateView]]:
        """The store's clock (ms) and the current state of several breakers, in one step
        (for cache refreshes). Breakers the store has never seen are missing."""

    @abstractmethod
    def get_policy(self, name: str) -> BreakerPolicy | None:
        """The stored policy, or None when the breaker runs on its callers' default."""

    @abstractmethod
    def set_policy(self, name: str, policy: BreakerPolicy, who: str) -> None:
        """Stores a policy; it governs every process's next call."""

    @abstractmethod
    def clear_policy(self, name: str, who: str) -> None:
        """Forgets the stored policy: callers' configured defaults apply again."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every breaker the store knows, sorted."""

    @abstractmethod
    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        """The latest events, oldest first; of one breaker when ``name`` is given."""
