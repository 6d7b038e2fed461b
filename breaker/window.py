"""A time-based sliding window of 1-second buckets with running sums (the in-process twin
of the window that ``backends/lua/window.lua`` keeps in a Redis hash: the same algorithm,
and ``tests/breaker/test_differential.py`` checks that both give the same figures)."""

from __future__ import annotations

from breaker.state import WindowStats


class SlidingWindow:
    """Calls, failures and slow calls of the last ``window`` seconds.

    A call at store time ``t`` ms lands in bucket ``t // 1000``; at time ``now`` the window
    holds the buckets ``s`` with ``s > now // 1000 - window``. The sums of the buckets are
    kept as they change, and a bucket is subtracted once, when it falls out of the window,
    so reading or adding costs the same whatever the window's length.
    ``head`` is the oldest second that may still hold a bucket (None when empty); a clock
    that went back adds to the newest bucket, so that buckets only ever start in time order.
    """

    def __init__(self) -> None:
        self._buckets: dict[int, list[int]] = {}
        self._sums = [0, 0, 0]
        self._head: int | None = None
        self._last: int | None = None

    def add(self, now_ms: int, window: int, *, calls: int = 1, failures: int = 0, slow: int = 0) -> WindowStats:
        """Adds outcomes to the bucket of ``now_ms``; returns the window's figures after."""
        self._expire(now_ms, window)
        second = now_ms // 1000
        if self._head is None or self._last is None:
            self._head = self._last = second
        elif second > self._last:
            self._last = second
        else:
            second = self._last
        bucket = self._buckets.setdefault(second, [0, 0, 0])
        for i, n in enumerate((calls, failures, slow)):
            bucket[i] += n
            self._sums[i] += n
        return self._stats()

    def stats(self, now_ms: int, window: int) -> WindowStats:
        """The window's figures at ``now_ms``, changing nothing: buckets are dropped only
        when an outcome is added (as in Redis, where a read writes nothing), so that a
        window made longer by an operator holds the same buckets in both stores."""
        expired = self._expired(now_ms // 1000 - window + 1)
        calls, failures, slow = self._sums
        for second in expired:
            c, f, s = self._buckets[second]
            calls, failures, slow = calls - c, failures - f, slow - s
        return WindowStats(calls=calls, failures=failures, slow=slow)

    def clear(self) -> None:
        self._buckets.clear()
        self._sums = [0, 0, 0]
        self._head = None
        self._last = None

    def _stats(self) -> WindowStats:
        calls, failures, slow = self._sums
        return WindowStats(calls=calls, failures=failures, slow=slow)

    def _expired(self, oldest: int) -> list[int]:
        """The seconds of the buckets older than ``oldest``: walked from the head, or taken
        from the buckets when there are fewer of them than seconds to walk."""
        if self._head is None or self._head >= oldest:
            return []
        if oldest - self._head > len(self._buckets):
            return [s for s in self._buckets if s < oldest]
        return [s for s in range(self._head, oldest) if s in self._buckets]

    def _expire(self, now_ms: int, window: int) -> None:
        oldest = now_ms // 1000 - window + 1
        expired = self._expired(oldest)
        if self._head is None or self._head >= oldest:
            return
        for second in expired:
            for i, n in enumerate(self._buckets.pop(second)):
                self._sums[i] -= n
        self._head = oldest
        if self._sums[0] <= 0:
            self.clear()
