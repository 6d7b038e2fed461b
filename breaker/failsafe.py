"""How a process tells a sick store from a healthy one, when it tries it again, and what it
keeps of the decisions it took on its own meanwhile.

Three kinds of store failure, told apart because they heal differently:

- **unreachable**: connection refused or reset, a timeout. Nothing is known of the call.
- **refusing**: the server answers but will not run the breaker's scripts: out of memory
  under ``noeviction``, a read-only replica right after a failover, a lost script cache, a
  server still loading its data. A PING succeeds; a decision does not.
- **script error**: a breaker script failed while running. That is a bug (or a hand-edited
  key); it is logged once with the script and breaker name and announced to listeners.

In every case the process decides with its local breaker. It goes back to the shared one
only when a script that writes succeeds (``lua/probe.lua``), never on a PING, and it waits
longer each time the store fails again soon after a rejoin, so that a flapping store keeps
the process local instead of bouncing it between the two many times a second.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from redis.exceptions import (
    BusyLoadingError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

from breaker.state import Outcome, WindowStats

#: What counts as "the store did not do it": any Redis error, and the socket errors that
#: redis-py lets through. (A guarded call's own CallTimeout is not an OSError, so a
#: SIGALRM that lands inside a Redis call is never taken for a store failure.)
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

#: redis-py's classes for the replies of a server that is up but refuses the work (it
#: strips the error code from their messages, so the class is what tells).
REFUSAL_CLASSES: tuple[type[ResponseError], ...] = (
    ReadOnlyError, OutOfMemoryError, NoScriptError, BusyLoadingError, NoPermissionError, ExecAbortError,
)

#: Error codes of such replies that redis-py leaves in the message (the first word).
REFUSAL_CODES = frozenset({
    "READONLY", "OOM", "NOSCRIPT", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "MISCONF",
    "CLUSTERDOWN", "TRYAGAIN", "NOPERM", "NOAUTH", "WRONGPASS", "EXECABORT",
})


class StoreFault(StrEnum):
    """Why a process decides with its local breaker."""

    UNREACHABLE = "unreachable"
    REFUSING = "refusing"
    SCRIPT_ERROR = "script_error"


class ScriptFailed(ResponseError):
    """A breaker script failed inside Redis (raised by the Redis backend, so that the
    log and the event can name the script and the breaker).

    Parameters:
      script: the script's name (``record``, ``admit``...).
      breaker: the breaker it ran for.
      cause: Redis's error message.
    """

    def __init__(self, script: str, breaker: str, cause: str) -> None:
        self.script = script
        self.breaker = breaker
        super().__init__(f"{script}.lua failed for breaker {breaker!r}: {cause}")


class OutcomeUncertain(RedisError):
    """Outcomes were sent and the connection failed before the answer: they may or may not
    have been recorded. The caller keeps them with their batch ids and, once the store is
    back, asks which batches ran before handing the others back, so that none is lost and
    none counted twice.

    Parameters:
      cause: the connection error.
      batches: for each outcome sent, in order, the id of the script call that carried it.
    """

    def __init__(self, cause: BaseException, batches: list[str]) -> None:
        self.cause = cause
        self.batches = batches
        super().__init__(f"outcomes may not have been recorded: {cause}")


def is_script_bug(exc: ResponseError) -> bool:
    """True when a script raised on its own (a Lua runtime error), not because the server
    refused one of its commands (OOM, READONLY...)."""
    if isinstance(exc, REFUSAL_CLASSES):
        return False
    message = str(exc)
    code = message.split(" ", 1)[0].upper()
    if code in REFUSAL_CODES:
        return False
    return "user_script" in message or "Error running script" in message


def classify(exc: BaseException) -> StoreFault:
    """The kind of failure ``exc`` (one of :data:`STORE_ERRORS`) says the store has."""
    cause: BaseException = exc
    if isinstance(exc, OutcomeUncertain):
        cause = exc.cause
    if isinstance(exc, ScriptFailed) and isinstance(exc.__cause__, BaseException):
        cause = exc.__cause__
    if isinstance(cause, ResponseError):
        return StoreFault.SCRIPT_ERROR if is_script_bug(cause) else StoreFault.REFUSING
    return StoreFault.UNREACHABLE


class RejoinSchedule:
    """When to try the shared store again.

    While degraded, attempts come every ``base`` seconds, growing by half after each failed
    attempt up to ``max_attempt_interval`` (a store that is down for minutes is not asked
    twenty times a second by every process). A store lost again within ``stable_after``
    seconds of a rejoin is a flap: the next wait starts twice as long as the last one did,
    up to ``max_flap_interval``; staying shared for ``stable_after`` forgives past flaps.
    Every wait gets ±20 % of jitter so that a fleet does not come back in lockstep.

    Parameters:
      base: the first wait, in seconds (``reconnect_interval``).
      max_attempt_interval: cap on the wait grown by failed attempts.
      max_flap_interval: cap on the wait grown by flaps.
      stable_after: seconds shared after which a loss is not a flap.
      rng: random numbers in [0, 1) for the jitter (tests pass a fixed one).
    """

    def __init__(
        self,
        base: float,
        max_attempt_interval: float = 5.0,
        max_flap_interval: float = 30.0,
        stable_after: float = 10.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.max_attempt_interval = max(max_attempt_interval, base)
        self.max_flap_interval = max(max_flap_interval, base)
        self.stable_after = stable_after
        self._rng = rng
        self.flaps = 0
        self.attempts = 0
        self._start = base
        self._interval = base
        self._rejoined_at: float | None = None
        self.next_at = 0.0

    def _jittered(self, seconds: float) -> float:
        return seconds * (0.8 + 0.4 * self._rng())

    def lost(self, now: float) -> None:
        """The store failed while shared."""
        if self._rejoined_at is not None and now - self._rejoined_at < self.stable_after:
            self.flaps += 1
            self._start = min(self._start * 2, self.max_flap_interval)
        else:
            self.flaps = 0
            self._start = self.base
        self._interval = self._start
        self.attempts = 0
        self.next_at = now + self._jittered(self._interval)

    def failed(self, now: float) -> None:
        """An attempt to rejoin failed."""
        self.attempts += 1
        grown = min(self._interval * 1.5, self.max_attempt_interval)
        self._interval = max(grown, self._start)
        self.next_at = now + self._jittered(self._interval)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def rejoined(self, now: float) -> None:
        self._rejoined_at = now
        self.attempts = 0


@dataclass
class _Counts:
    buckets: dict[int, list[int]] = field(default_factory=dict)  # second -> calls, failures, slow
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, second: int, counter: str, window: tuple[int, int, int] | None) -> None:
        self.totals[counter] += 1
        if window is not None:
            bucket = self.buckets.setdefault(second, [0, 0, 0])
            for i, n in enumerate(window):
                bucket[i] += n

    def fold(self, other: _Counts) -> None:
        for second, counts in other.buckets.items():
            bucket = self.buckets.setdefault(second, [0, 0, 0])
            for i, n in enumerate(counts):
                bucket[i] += n
        self.totals.update(other.totals)

    @property
    def size(self) -> int:
        return sum(self.totals.values())


@dataclass
class Tally(_Counts):
    """One breaker's locally decided outcomes.

    Parameters:
      buckets, totals: outcomes known not to be in the store.
      uncertain: outcomes whose write timed out, by batch id: in the store or not, to be
        asked (:meth:`RedisBackend.applied_batches`) before they are handed back.
    """

    uncertain: dict[str, _Counts] = field(default_factory=dict)

    def settle(self, applied: set[str]) -> None:
        """Drops the uncertain batches the store ran; keeps the others for hand-back."""
        for batch, counts in self.uncertain.items():
            if batch not in applied:
                self.fold(counts)
        self.uncertain.clear()

    def restore(self, other: Tally) -> None:
        self.fold(other)
        for batch, counts in other.uncertain.items():
            self.uncertain.setdefault(batch, _Counts()).fold(counts)

    @property
    def size(self) -> int:
        return sum(self.totals.values()) + sum(c.size for c in self.uncertain.values())


class LocalTally:
    """Every outcome a process decided on its own while the store was unreachable, kept
    apart from the local breaker's window (which a local trip empties), so that all of them
    can be handed back to the shared window at rejoin (``lua/merge.lua``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[str, Tally] = {}

    def add(self, name: str, now_ms: int, outcome: Outcome, slow: bool, batch: str | None = None) -> None:
        """Parameters:
          batch: the id of a write that timed out carrying this outcome (it may have been
            recorded after all), None when the store certainly does not have it."""
        counter = Outcome.SLOW.value if outcome == Outcome.SUCCESS and slow else outcome.value
        window = None if outcome == Outcome.IGNORED else (1, int(outcome.is_failure), int(slow))
        with self._lock:
            tally = self._tallies.setdefault(name, Tally())
            target: _Counts = tally if batch is None else tally.uncertain.setdefault(batch, _Counts())
            target.add(now_ms // 1000, counter, window)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._tallies)

    def count(self) -> int:
        """Outcomes tallied and not yet handed back."""
        with self._lock:
            return sum(t.size for t in self._tallies.values())

    def take(self, name: str) -> Tally | None:
        """Removes and returns one breaker's tally (give it back with :meth:`restore` if it
        could not be handed over)."""
        with self._lock:
            return self._tallies.pop(name, None)

    def restore(self, name: str, tally: Tally) -> None:
        with self._lock:
            self._tallies.setdefault(name, Tally()).restore(tally)

    @staticmethod
    def window(tally: _Counts, now_ms: int, window: int) -> WindowStats:
        """The tally's figures over the last ``window`` seconds (older outcomes would have
        left the shared window by now; they still reach the lifetime totals)."""
        oldest_kept = now_ms // 1000 - window + 1
        calls = failures = slow = 0
        for second, (c, f, s) in tally.buckets.items():
            if second >= oldest_kept:
                calls, failures, slow = calls + c, failures + f, slow + s
        return WindowStats(calls=calls, failures=failures, slow=slow)

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by one of its threads."""
        self._lock = threading.Lock()
