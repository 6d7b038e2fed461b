"""Exceptions callers of the breaker see, and how exceptions from guarded calls count."""

from __future__ import annotations

from dataclasses import dataclass, field

from breaker.state import Outcome, State


class BreakerError(Exception):
    """Base of the breaker's own exceptions."""


class CallNotPermitted(BreakerError):
    """The breaker turned the call away.

    Parameters:
      breaker: the breaker's name.
      state: its state when it refused.
      retry_after: seconds until it may admit again, when known.
    """

    def __init__(self, breaker: str, state: State, retry_after: float | None = None) -> None:
        self.breaker = breaker
        self.state = state
        self.retry_after = retry_after
        hint = f"; retry in {retry_after:.1f}s" if retry_after is not None else ""
        super().__init__(f"breaker {breaker!r} is {state.value}: call not permitted{hint}")


class InputError(ValueError):
    """The caller's input can never succeed (an undecodable image, an empty text...).

    A guarded call that raises it is IGNORED by default: it says nothing about the model's
    health, so it must never push a breaker towards OPEN.
    """


class CallTimeout(BreakerError):
    """A guarded call ran past its ``call_timeout``.

    Deliberately not a ``TimeoutError``: that is an ``OSError``, the family of the store's
    socket errors, and a timer that fires while the worker is inside a Redis call must
    never be taken for a store failure (nor a store failure for a model timeout).
    """


@dataclass(frozen=True)
class ExceptionClassifier:
    """Decides what an exception from a guarded call means for the breaker.

    Parameters:
      ignored: exception types that say nothing about the model (bad input): IGNORED.
      timeouts: exception types that mean the call ran out of time: TIMEOUT.
      Anything else that is an ``Exception`` is a FAILURE. A ``BaseException`` that is not
      an ``Exception`` (KeyboardInterrupt, SystemExit, a worker shutting down) is IGNORED:
      the model did not fail, the process stopped.
    """

    ignored: tuple[type[BaseException], ...] = (InputError,)
    timeouts: tuple[type[BaseException], ...] = field(default=(TimeoutError, CallTimeout))

    def classify(self, exc: BaseException) -> Outcome:
        if isinstance(exc, self.ignored):
            return Outcome.IGNORED
        if isinstance(exc, self.timeouts):
            return Outcome.TIMEOUT
        if isinstance(exc, Exception):
            return Outcome.FAILURE
        return Outcome.IGNORED
