"""The outcomes a process decided on its own while the shared store was unusable.

They are kept apart from the local breaker's window (which a local trip empties) so that
every one of them can be handed back to the shared window at rejoin (``lua/merge.lua``):
shared counts after a rejoin equal the calls made. Outcomes whose write timed out are kept
under the id of that write, since the store may have run it after all; the store is asked
before they are handed back, so none is counted twice.

Two rules make a hand-back count each outcome exactly once, and judge only what may judge:

- **the store remembers write ids for a time, not for a count** (:data:`IDEMPOTENCY_HORIZON_S`,
  the same figure as ``APPLIED_HORIZON_MS`` in ``lua/common.lua``): a write that timed out
  is asked about within it; one older than it cannot be asked about, and its outcomes are
  reported lost (``lost``, ``health().lost_outcomes``), never handed back a second time;
- **a tally is kept per basis**, the shared breaker's (incarnation, epoch) its outcomes were
  admitted under (the ticket's, or for the local breaker's tickets the shared view the
  process last saw): ``lua/merge.lua`` judges them only while the shared breaker is still in
  that epoch; once it moved on they reach the totals only, as a stale outcome does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from breaker.state import Outcome, WindowStats

#: The counter of refusals, which a tally carries beside the outcomes.
REJECTED = "rejected"

#: Seconds the store remembers the id of a write (``APPLIED_HORIZON_MS`` in lua/common.lua).
IDEMPOTENCY_HORIZON_S = 600
#: An uncertain write older than this (local clock) is not asked about: the store may have
#: forgotten it (a margin for the hosts' clocks being apart).
ASK_WITHIN_MS = int(IDEMPOTENCY_HORIZON_S * 0.9 * 1000)

#: The shared breaker's (incarnation, epoch) a tally's outcomes were admitted under; None
#: when the process never saw the shared breaker.
Basis = tuple[int, int] | None


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
        """Outcomes held (refusals, which are counters and not outcomes, left out)."""
        return sum(n for counter, n in self.totals.items() if counter != REJECTED)


@dataclass
class Tally(_Counts):
    """One breaker's locally decided outcomes.

    Parameters:
      buckets, totals: outcomes known not to be in the store.
      uncertain: outcomes whose write timed out, by batch id: in the store or not, to be
        asked (:meth:`RedisBackend.applied_batches`) before they are handed back.
      sent_ms: when each uncertain batch was sent (local wall clock, ms).
    """

    uncertain: dict[str, _Counts] = field(default_factory=dict)
    sent_ms: dict[str, int] = field(default_factory=dict)

    def overdue(self, now_ms: int) -> list[str]:
        """The uncertain batches too old to be asked about."""
        return [b for b in self.uncertain if now_ms - self.sent_ms.get(b, now_ms) > ASK_WITHIN_MS]

    def settle(self, applied: set[str], now_ms: int) -> int:
        """Drops the uncertain batches the store ran and those past the horizon (returns how
        many outcomes those were: knowingly lost); keeps the others for hand-back."""
        overdue = set(self.overdue(now_ms))
        lost = 0
        for batch, counts in self.uncertain.items():
            if batch in overdue:
                lost += counts.size
            elif batch not in applied:
                self.fold(counts)
        self.uncertain.clear()
        self.sent_ms.clear()
        return lost

    def as_uncertain(self, batch: str, sent_ms: int) -> Tally:
        """These (settled) counts as one uncertain batch: sent in a write that may have run."""
        counts = _Counts(buckets={k: list(v) for k, v in self.buckets.items()}, totals=Counter(self.totals))
        return Tally(uncertain={batch: counts}, sent_ms={batch: sent_ms})

    def restore(self, other: Tally) -> None:
        self.fold(other)
        for batch, counts in other.uncertain.items():
            self.uncertain.setdefault(batch, _Counts()).fold(counts)
            self.sent_ms.setdefault(batch, other.sent_ms.get(batch, 0))

    @property
    def size(self) -> int:
        return super().size + sum(c.size for c in self.uncertain.values())


class LocalTally:
    """Every outcome a process decided on its own while the store was unreachable, kept
    apart from the local breaker's window (which a local trip empties), so that all of them
    can be handed back to the shared window at rejoin (``lua/merge.lua``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, Basis], Tally] = {}
        #: Outcomes of writes that timed out longer ago than the store remembers write ids:
        #: neither handed back nor known to be in the store (reported, never double-counted).
        self.lost = 0

    def add(self, name: str, now_ms: int, outcome: Outcome, slow: bool, batch: str | None = None,
            basis: Basis = None, sent_ms: int | None = None) -> None:
        """Parameters:
          batch: the id of a write that timed out carrying this outcome (it may have been
            recorded after all), None when the store certainly does not have it.
          basis: the shared (incarnation, epoch) the call was admitted under.
          sent_ms: when that write was sent (default ``now_ms``)."""
        counter = Outcome.SLOW.value if outcome == Outcome.SUCCESS and slow else outcome.value
        window = None if outcome == Outcome.IGNORED else (1, int(outcome.is_failure), int(slow))
        with self._lock:
            tally = self._tallies.setdefault((name, basis), Tally())
            target: _Counts = tally
            if batch is not None:
                target = tally.uncertain.setdefault(batch, _Counts())
                tally.sent_ms.setdefault(batch, now_ms if sent_ms is None else sent_ms)
            target.add(now_ms // 1000, counter, window)

    def add_count(self, name: str, counter: str, n: int, batch: str | None = None,
                  sent_ms: int | None = None) -> None:
        """Adds to a lifetime counter only (refusals the store did not take; ``batch`` and
        ``sent_ms``: as for :meth:`add`)."""
        with self._lock:
            # Counters only (no window): the basis they were decided on does not matter.
            tally = self._tallies.setdefault((name, None), Tally())
            target: _Counts = tally
            if batch is not None:
                target = tally.uncertain.setdefault(batch, _Counts())
                tally.sent_ms.setdefault(batch, int(time.time() * 1000) if sent_ms is None else sent_ms)
            target.totals[counter] += n

    def names(self) -> list[str]:
        with self._lock:
            return sorted({name for name, _ in self._tallies})

    def keys(self) -> list[tuple[str, Basis]]:
        """Every (breaker, basis) holding a tally."""
        with self._lock:
            return list(self._tallies)

    def count(self) -> int:
        """Outcomes tallied and not yet handed back."""
        with self._lock:
            return sum(t.size for t in self._tallies.values())

    def take(self, key: tuple[str, Basis]) -> Tally | None:
        """Removes and returns one tally (give it back with :meth:`restore` if it could not
        be handed over)."""
        with self._lock:
            return self._tallies.pop(key, None)

    def restore(self, key: tuple[str, Basis], tally: Tally) -> None:
        with self._lock:
            self._tallies.setdefault(key, Tally()).restore(tally)

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
