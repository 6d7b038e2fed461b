"""A lock that keeps a sweep (parked jobs sent on, due deadlines rerouted) to one process at
a time per model, however long the sweep runs.

redis-py's :class:`redis.lock.Lock`, renewed before each step: a sweep that outlives the
lock's timeout keeps it, and one whose lock lapsed anyway (a step that took longer than the
timeout, Redis restarted) stops before its next step rather than run beside the sweeper
that may have taken the lock since. What it left is found by the next sweep.
"""

from __future__ import annotations

import logging

import redis
from redis.exceptions import LockError
from redis.lock import Lock

log = logging.getLogger(__name__)


class SweepLock(Lock):
    """Parameters:
      client: Redis.
      name: the lock's key.
      timeout: seconds the lock lasts unless renewed; a sweep renews it before each step.
    """

    def __init__(self, client: redis.Redis, name: str, timeout: float) -> None:
        super().__init__(client, name, timeout=timeout, blocking=False)

    def still_held(self) -> bool:
        """Renews the lock for the sweep's next step; False when it was lost (the sweep
        must stop)."""
        try:
            self.reacquire()
        except LockError:
            log.warning("lost %s mid-sweep; stopping (the next sweep resumes)", self.name)
            return False
        return True

    def release_if_held(self) -> None:
        """Releases the lock unless it already lapsed (then it is not ours to delete)."""
        try:
            self.release()
        except LockError:
            pass
