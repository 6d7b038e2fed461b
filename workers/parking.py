"""Jobs waiting for their model to recover.

A job is parked when its breaker refuses it and the caller asked to wait, or when even the
fallback could not answer it. Parked jobs go back to their model's queue, under their own
task ids, when the breaker closes; a waiting job whose deadline passes goes to the fallback
instead. Nothing is dropped: an entry leaves the lot only after its job was sent on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from pydantic import BaseModel, Field

from breaker.keyspace import Keyspace
from workers.sweep_lock import SweepLock


class ParkedJob(BaseModel):
    """Parameters:
      task_id: the caller's task id; the job keeps it when sent on.
      model: the model it waits for.
      job: the job as it travels.
      reason: why it was parked.
      fallback_failed: True when the fallback already tried and could not answer; such a
        job waits for the model whatever its deadline.
      parked_at: Unix time.
    """

    task_id: str
    model: str
    job: dict[str, Any]
    reason: str
    fallback_failed: bool = False
    parked_at: float = Field(default_factory=time.time)


class ParkingLot:
    """Parameters:
      client: Redis.
      prefix: key prefix.
      lock_timeout: seconds the lock of a sending-on lasts between two of its steps.
    """

    def __init__(self, client: redis.Redis, prefix: str, lock_timeout: float = 10.0) -> None:
        self.client, self.prefix, self.lock_timeout = client, prefix, lock_timeout
        self.keys = Keyspace(prefix)

    def key(self, model: str) -> str:
        return self.keys.parked(model)

    def park(self, entry: ParkedJob) -> None:
        self.client.hset(self.key(entry.model), entry.task_id, entry.model_dump_json())

    def entries(self, model: str) -> list[ParkedJob]:
        return [ParkedJob.model_validate_json(v) for v in self.client.hvals(self.key(model))]

    def count(self, model: str) -> int:
        return int(self.client.hlen(self.key(model)))

    def send_on(
        self, model: str, send: Callable[[ParkedJob], None], select: Callable[[ParkedJob], bool] = lambda e: True
    ) -> int:
        """Sends every selected entry on and removes it; returns how many.

        One process at a time per model (a lock held across the whole sending-on:
        workers.sweep_lock), so that the fleet hearing the same CLOSED event does not send
        each job once per worker. An entry is removed only after ``send`` returned: a crash
        in between sends it twice (same task id), never zero times.
        """
        lock = SweepLock(self.client, self.keys.parking_lock(model), self.lock_timeout)
        if not lock.acquire():
            return 0
        sent = 0
        try:
            for entry in self.entries(model):
                if not select(entry):
                    continue
                if not lock.still_held():
                    break
                send(entry)
                self.client.hdel(self.key(model), entry.task_id)
                sent += 1
        finally:
            lock.release_if_held()
        return sent
