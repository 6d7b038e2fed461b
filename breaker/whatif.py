"""``fusebox breaker what-if``: replays a breaker's recorded history (24 h of 1-second
buckets, breaker/shadow.py) against another policy and says when it would have tripped.

The replay judges the window once per second that saw calls, with that second's calls
added at once (the breaker judges after every call: a trip found here may have come a
fraction of a second earlier). After a trip it skips ``wait_in_open`` seconds (their calls
would have been refused) and starts again with an empty window, as a recovered breaker
does (a consecutive-failures threshold counts a streak over seconds whose calls all
failed: the order within a second is not recorded); it assumes each recovery succeeded (probes are not replayed: whether they would
have passed depends on calls that never ran), so the wait never grows. The recorded
history is what really ran: seconds the real breaker refused left no calls to replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from breaker.machine import streak_reason, trip_reason
from breaker.policy import BreakerPolicy
from breaker.state import WindowStats


class WouldHaveTripped(BaseModel):
    """One trip the replayed policy would have made.

    Parameters:
      at: the second (store time, Unix seconds) whose calls tripped it.
      reason: why, as the breaker would have said it.
      window: the window's figures then.
    """

    model_config = ConfigDict(frozen=True)

    at: int
    reason: str
    window: WindowStats


def replay(buckets: Mapping[int, tuple[int, int, int]], policy: BreakerPolicy) -> list[WouldHaveTripped]:
    """The trips ``policy`` would have made over ``buckets`` (second -> calls, failures,
    slow calls), in order."""
    trips: list[WouldHaveTripped] = []
    window: deque[tuple[int, int, int, int]] = deque()
    calls = failures = slow = streak = 0
    open_until = None
    for second in sorted(buckets):
        if open_until is not None and second < open_until:
            continue  # OPEN: these calls would have been refused
        c, f, s = buckets[second]
        while window and window[0][0] <= second - policy.window:
            _, oc, of, os_ = window.popleft()
            calls, failures, slow = calls - oc, failures - of, slow - os_
        window.append((second, c, f, s))
        calls, failures, slow = calls + c, failures + f, slow + s
        stats = WindowStats(calls=calls, failures=failures, slow=slow, minimum_calls=policy.minimum_calls)
        reason = trip_reason(stats, policy, "window") if calls >= policy.minimum_calls else None
        # Order within a second is not recorded: a streak runs over seconds whose calls all failed.
        streak = streak + c if f == c else 0
        if reason is None:
            reason = streak_reason(streak, policy)
        if reason is not None:
            trips.append(WouldHaveTripped(at=second, reason=reason, window=stats))
            window.clear()
            calls = failures = slow = streak = 0
            open_until = second + max(1, round(policy.wait_in_open))
    return trips
