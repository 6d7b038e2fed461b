"""A time-based sliding window of 1-second buckets (the in-process twin of the window
that ``backends/lua/common.lua`` keeps in a Redis hash)."""

from __future__ import annotations

from breaker.state import WindowStats


class SlidingWindow:
    """Calls, failures and slow calls of the last ``window`` seconds.

    A call at store time ``t`` ms lands in bucket ``t // 1000``; at time ``now`` the window
    holds the buckets ``s`` with ``s > now // 1000 - window``, and older ones are dropped
    when the window is read.
    """

    def __init__(self) -> None:
        self._buckets: dict[int, list[int]] = {}

    def add(self, now_ms: int, *, failure: bool, slow: bool) -> None:
        bucket = self._buckets.setdefault(now_ms // 1000, [0, 0, 0])
        bucket[0] += 1
        bucket[1] += int(failure)
        bucket[2] += int(slow)

    def stats(self, now_ms: int, window: int) -> WindowStats:
        """The window's figures at ``now_ms``; evicts buckets that fell out of it."""
        oldest_kept = now_ms // 1000 - window + 1
        calls = failures = slow = 0
        for second in list(self._buckets):
            if second < oldest_kept:
                del self._buckets[second]
                continue
            c, f, s = self._buckets[second]
            calls, failures, slow = calls + c, failures + f, slow + s
        return WindowStats(calls=calls, failures=failures, slow=slow)

    def clear(self) -> None:
        self._buckets.clear()
