"""The outcomes a process decided on its own while the shared store was unusable.

They are kept apart from the local breaker's window (which a local trip empties) so that
every one of them can be handed back to the shared window at rejoin (``lua/merge.lua``):
shared counts after a rejoin equal the calls made. Outcomes whose write timed out are kept
under the id of that write, since the store may have run it after all; the store is asked
before they are handed back, so none is counted twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from breaker.state import Outcome, WindowStats


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

    def as_uncertain(self, batch: str) -> Tally:
        """These (settled) counts as one uncertain batch: sent in a write that may have run."""
        counts = _Counts(buckets={k: list(v) for k, v in self.buckets.items()}, totals=Counter(self.totals))
        return Tally(uncertain={batch: counts})

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

    def add_count(self, name: str, counter: str, n: int, batch: str | None = None) -> None:
        """Adds to a lifetime counter only (refusals the store did not take; ``batch``: as
        for :meth:`add`)."""
        with self._lock:
            tally = self._tallies.setdefault(name, Tally())
            target: _Counts = tally if batch is None else tally.uncertain.setdefault(batch, _Counts())
            target.totals[counter] += n

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
