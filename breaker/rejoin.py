"""When a process that lost the shared store tries it again: growing, jittered waits, and
longer ones for a store that flaps (adopted from interlock-cb's retry backoff)."""

from __future__ import annotations

import random
from collections.abc import Callable


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
