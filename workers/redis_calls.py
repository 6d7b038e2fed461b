"""How worker code treats Redis errors outside the breaker (which has its own fail-safe).

A Redis restart must neither fail a job nor count against a model. Side data (fault
switches, the call trace, the result cache, the deadline index) is best effort: skipped,
with a warning, when Redis does not answer. What a job cannot do without (its payload, its
place in the parking lot) is retried for a while; if Redis stays away, the job's message is
given back to the broker (:class:`~workers.errors.StoreDown` turns into Celery's Reject with
requeue), never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from breaker import STORE_ERRORS
from workers.errors import StoreDown

log = logging.getLogger(__name__)
T = TypeVar("T")


def best_effort(what: str, call: Callable[[], T], default: T) -> T:
    """``call()``, or ``default`` (with a warning) when Redis does not answer.

    Parameters:
      what: what the call does, for the log.
      call: the Redis call.
      default: what to return without Redis.
    """
    try:
        return call()
    except STORE_ERRORS as exc:
        log.warning("%s skipped: Redis unavailable (%s)", what, exc)
        return default


def essential(what: str, call: Callable[[], T], within: float = 30.0) -> T:
    """``call()``, retried with a growing pause while Redis does not answer.

    Parameters:
      what: what the call does, for the log and the error.
      call: the Redis call.
      within: seconds to keep trying before raising :class:`~workers.errors.StoreDown`.
    """
    deadline = time.monotonic() + within
    delay = 0.1
    while True:
        try:
            return call()
        except STORE_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise StoreDown(f"{what}: Redis unreachable for {within:.0f}s ({exc})") from exc
            log.warning("%s: Redis unavailable (%s); retrying", what, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
