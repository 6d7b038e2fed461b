"""A clock tests step by hand, shared by a backend and the cache that reads it."""

from __future__ import annotations


class ManualClock:
    """Seconds, starting at ``start`` and moving only when told."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
