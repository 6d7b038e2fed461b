"""fusebox's exceptions (the root of every package's own), what counts as a store failure,
and how exceptions from guarded calls count.

The tree (``workers/errors.py`` adds the job errors under the same root)::

    FuseboxError
    ├── BreakerError
    │   ├── CallNotPermitted        the breaker turned the call away
    │   ├── CallTimeout             a guarded call ran past its call_timeout
    │   ├── StoreUnavailable        an operator action needs the shared store, which did not answer
    │   ├── ScriptFailed            a breaker script failed inside Redis (also a redis ResponseError)
    │   └── OutcomeUncertain        outcomes sent, answer lost (also a RedisError)
    └── InputError                  the caller's input can never succeed (also a ValueError)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.exceptions import RedisError, ResponseError

from breaker.state import Outcome, State

#: What counts as "the store did not do it": any Redis error, and the socket errors that
#: redis-py lets through. Catch this tuple rather than spelling the pair out again.
#: A guarded call's own :class:`CallTimeout` is not an ``OSError``, so a SIGALRM that lands
#: inside a Redis call is never taken for a store failure.
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


class FuseboxError(Exception):
    """Root of every exception fusebox defines (breaker, workers and API alike)."""


class BreakerError(FuseboxError):
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


class InputError(FuseboxError, ValueError):
    """The caller's input can never succeed (an undecodable image, an empty text...).

    A guarded call that raises it is IGNORED by default: it says nothing about the model's
    health, so it must never push a breaker towards OPEN. Still a ``ValueError``, so that
    callers who catch that keep catching it.
    """


class CallTimeout(BreakerError):
    """A guarded call ran past its ``call_timeout``.

    Deliberately not a ``TimeoutError``: that is an ``OSError``, the family of the store's
    socket errors, and a timer that fires while the worker is inside a Redis call must
    never be taken for a store failure (nor a store failure for a model timeout).
    """


class StoreUnavailable(BreakerError):
    """An operator action needs the shared store and it did not answer."""


class ScriptFailed(BreakerError, ResponseError):
    """A breaker script failed inside Redis (raised by the Redis backend, so that the
    log and the event can name the script and the breaker).

    Still a ``ResponseError``: the fail-safe takes it for a store failure (one of
    :data:`STORE_ERRORS`) and classifies it by its cause.

    Parameters:
      script: the script's name (``record``, ``admit``...).
      breaker: the breaker it ran for.
      cause: Redis's error message.
    """

    def __init__(self, script: str, breaker: str, cause: str) -> None:
        self.script = script
        self.breaker = breaker
        super().__init__(f"{script}.lua failed for breaker {breaker!r}: {cause}")


class OutcomeUncertain(BreakerError, RedisError):
    """Outcomes were sent and the connection failed before the answer: they may or may not
    have been recorded. The caller keeps them with their batch ids and, once the store is
    back, asks which batches ran before handing the others back, so that none is lost and
    none counted twice.

    Still a ``RedisError``: one of :data:`STORE_ERRORS`, the store failed.

    Parameters:
      cause: the connection error.
      batches: for each outcome sent, in order, the id of the script call that carried it.
    """

    def __init__(self, cause: BaseException, batches: list[str]) -> None:
        self.cause = cause
        self.batches = batches
        super().__init__(f"outcomes may not have been recorded: {cause}")


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
