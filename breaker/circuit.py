"""One named breaker as a caller uses it: admit, record, guard, decorate, operate."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from breaker.errors import ExceptionClassifier
from breaker.events import BreakerEvent
from breaker.policy import BreakerPolicy
from breaker.state import BreakerSnapshot, Control, Outcome, RecordResult, State, Ticket

if TYPE_CHECKING:
    from breaker.registry import Breakers

P = ParamSpec("P")
R = TypeVar("R")


class CircuitBreaker:
    """A handle on one shared breaker. Cheap; get it from :meth:`Breakers.get`.

    Parameters:
      name: the breaker's name (for fusebox's workers, the model's queue name).
      owner: the registry that holds the store, the cache and the listeners.
      policy: the policy this process was configured with; a policy stored in Redis wins.
      classifier: how exceptions from guarded calls count.
    """

    def __init__(
        self, name: str, owner: Breakers, policy: BreakerPolicy, classifier: ExceptionClassifier
    ) -> None:
        self.name = name
        self._owner = owner
        self.configured_policy = policy
        self.classifier = classifier

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.value}>"

    # -- what callers read -------------------------------------------------------------------

    @property
    def policy(self) -> BreakerPolicy:
        """The effective policy: the one stored in Redis if any, else the fleet default,
        else the configured one."""
        return self._owner.effective_policy(self.name)

    @property
    def state(self) -> State:
        """The state as this process last heard it (no round trip)."""
        return self._owner.known_state(self.name)

    def snapshot(self) -> BreakerSnapshot:
        """Reads state, window, probes and totals from the store (the local breaker's when
        the store is unreachable)."""
        return self._owner.snapshot(self.name)

    # -- admission and outcomes ------------------------------------------------------------------

    def admit(self) -> Ticket:
        """Asks to run one call; returns the ticket to record its outcome with.

        Raises:
          CallNotPermitted: the breaker is OPEN or FORCED_OPEN, or HALF_OPEN with every
            probe permit taken.
        """
        return self._owner.admit(self)

    def record(
        self, ticket: Ticket, outcome: Outcome, duration: float, *, wait: bool = False
    ) -> RecordResult | None:
        """Reports how an admitted call ended.

        Parameters:
          ticket: from :meth:`admit`.
          outcome: SUCCESS, FAILURE, TIMEOUT, SLOW or IGNORED; a SUCCESS that took
            ``slow_call_duration`` or longer counts as slow by itself.
          duration: seconds the call ran.
          wait: False (the default) queues the outcome and returns None at once; True
            sends it now and returns the store's answer.
        """
        if ticket.breaker != self.name:
            raise ValueError(f"ticket of breaker {ticket.breaker!r} recorded on {self.name!r}")
        return self._owner.record(self, ticket, outcome, duration, wait=wait)

    def guard(
        self,
        ticket: Ticket | None = None,
        *,
        timeout: float | None = None,
        recorded: Callable[[float], float] | None = None,
    ) -> GuardedCall:
        """Runs the ``with`` body as one guarded call.

        Raises CallNotPermitted before the body runs when the breaker refuses. An exception
        from the body is classified and re-raised; a body that returns after its timeout
        counts as a TIMEOUT (the breaker cannot interrupt it: enforce the limit where the
        call runs, as the Celery workers do). The outcome recorded is then on the returned
        object's ``outcome``.

        Parameters:
          ticket: a ticket granted beforehand (a HALF_OPEN probe permit handed out with the
            job): the call runs on it, without asking the breaker again.
          timeout: seconds after which a body that returns counts as a TIMEOUT; by default
            the policy's ``call_timeout``.
          recorded: turns the measured duration into the one the breaker is told (a call
            allowed more time for a bigger input reports its duration per reference-size
            input); by default the measured one.
        """
        if ticket is not None and ticket.breaker != self.name:
            raise ValueError(f"ticket of breaker {ticket.breaker!r} guarded on {self.name!r}")
        return GuardedCall(self, ticket, timeout, recorded)

    def call(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Runs ``func(*args, **kwargs)`` as one guarded call."""
        with self.guard():
            return func(*args, **kwargs)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Use as a decorator: every call of ``func`` is guarded."""

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.guard():
                return func(*args, **kwargs)

        return guarded

    # -- operator actions (they need the shared store) -------------------------------------------

    def trip(self, reason: str = "", who: str | None = None) -> BreakerEvent:
        """To OPEN; it recovers by itself after ``wait_in_open``."""
        return self._owner.control(self.name, Control.TRIP, reason, who)

    def force_open(self, reason: str = "", who: str | None = None) -> BreakerEvent:
        """To FORCED_OPEN: every call rejected until :meth:`reset`."""
        return self._owner.control(self.name, Control.FORCE_OPEN, reason, who)

    def reset(self, reason: str = "", who: str | None = None) -> BreakerEvent:
        """To CLOSED with an empty window."""
        return self._owner.control(self.name, Control.RESET, reason, who)

    def disable(self, reason: str = "", who: str | None = None) -> BreakerEvent:
        """To DISABLED: every call admitted, nothing recorded."""
        return self._owner.control(self.name, Control.DISABLE, reason, who)

    def metrics_only(self, reason: str = "", who: str | None = None) -> BreakerEvent:
        """To METRICS_ONLY: every call admitted and recorded, never tripped."""
        return self._owner.control(self.name, Control.METRICS_ONLY, reason, who)

    def set_policy(self, policy: BreakerPolicy, who: str | None = None) -> None:
        """Stores ``policy`` for this breaker; every process uses it from its next call."""
        self._owner.set_policy(self.name, policy, who)

    def clear_policy(self, who: str | None = None) -> None:
        """Drops the stored policy; each process's configured one applies again."""
        self._owner.clear_policy(self.name, who)


class GuardedCall:
    """``with breaker.guard() as ticket:`` — a plain context manager (no generator: this is
    every guarded call's path, and a generator-based one costs a few microseconds more).

    After the body: ``outcome`` is what was recorded (None before), ``elapsed`` the seconds
    the body ran as measured (before ``recorded`` turned them into the recorded duration).
    """

    __slots__ = ("_breaker", "_ticket", "_timeout", "_recorded", "_started", "outcome", "elapsed")

    def __init__(
        self,
        breaker: CircuitBreaker,
        ticket: Ticket | None = None,
        timeout: float | None = None,
        recorded: Callable[[float], float] | None = None,
    ) -> None:
        self._breaker = breaker
        self._ticket = ticket
        self._timeout = timeout
        self._recorded = recorded
        self.outcome: Outcome | None = None
        self.elapsed: float | None = None

    def __enter__(self) -> Ticket:
        if self._ticket is None:
            breaker = self._breaker
            self._ticket = breaker._owner.admit(breaker)
        self._started = time.perf_counter()
        return self._ticket

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        elapsed = time.perf_counter() - self._started
        breaker = self._breaker
        if exc is not None:
            outcome = breaker.classifier.classify(exc)
        else:
            timeout = self._timeout
            if timeout is None:
                timeout = breaker.policy.call_timeout
            outcome = Outcome.TIMEOUT if elapsed > timeout else Outcome.SUCCESS
        self.outcome, self.elapsed = outcome, elapsed
        recorded = self._recorded
        breaker._owner.record(breaker, self._ticket, outcome, elapsed if recorded is None else recorded(elapsed),
                              wait=False)
        return False
