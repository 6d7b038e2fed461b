"""What fusebox knows of each job it accepted: that it exists, and whether it may still be
cancelled.

Celery answers PENDING for any id it has never seen, forever. A producer records every job
it accepts (``<prefix>:job:<id>``, a hash kept as long as results), so that an id fusebox
never accepted, or one whose record expired, is answered "unknown job" instead.

The record's ``phase`` makes cancelling safe against a worker starting the job at the same
moment: a worker *begins* a job (``queued`` or ``parked`` -> ``started``) and a cancel
(``queued`` or ``parked`` -> ``cancelled``) each in one Lua step, so exactly one of them
wins. A cancelled job is never run: the worker that takes its message drops it.
"""

from __future__ import annotations

import time
from typing import Literal

import redis
from pydantic import BaseModel

from breaker.keyspace import Keyspace

Phase = Literal["queued", "parked", "started", "cancelled"]
CancelOutcome = Literal["cancelled", "unknown", "started", "already cancelled"]

# KEYS: the job's record. ARGV: the new phase. -1 unknown, 0 refused (cancelled), 1 ok.
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'phase') == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[1])
return 1
"""

# KEYS: the job's record. -1 unknown, 0 started (too late), 2 already cancelled, 1 cancelled.
_CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local phase = redis.call('HGET', KEYS[1], 'phase')
if phase == 'started' then return 0 end
if phase == 'cancelled' then return 2 end
redis.call('HSET', KEYS[1], 'phase', 'cancelled')
return 1
"""


class JobRecord(BaseModel):
    """Parameters:
      model: the model the job was submitted for.
      routed_to: ``model`` or ``fallback``, as decided at submission.
      phase: ``queued``, ``parked``, ``started`` or ``cancelled``.
      submitted_at: Unix time.
    """

    model: str
    routed_to: str
    phase: Phase
    submitted_at: float


class JobLedger:
    """Parameters:
      client: the Redis of fusebox's keys.
      prefix: key prefix.
      ttl: seconds a record is kept (as long as results, by default a week).
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: int = 7 * 24 * 3600) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl
        self.keys = Keyspace(prefix)
        self._begin = client.register_script(_BEGIN)
        self._cancel = client.register_script(_CANCEL)

    def key(self, task_id: str) -> str:
        return self.keys.job(task_id)

    def record(self, task_id: str, model: str, routed_to: str) -> None:
        """Before the job is published: a worker may take it at once."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(task_id), mapping={"model": model, "routed_to": routed_to, "phase": "queued",
                                              "submitted_at": repr(time.time())})
        pipe.expire(self.key(task_id), self.ttl)
        pipe.execute()

    def get(self, task_id: str) -> JobRecord | None:
        raw = self.client.hgetall(self.key(task_id))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return JobRecord.model_validate(fields)

    def begin(self, task_id: str, phase: Phase = "started") -> bool:
        """A worker takes the job (or parks it): False when it was cancelled. A job without
        a record (sent by other means than a fusebox producer) may run."""
        return int(self._begin(keys=[self.key(task_id)], args=[phase])) != 0

    def cancel(self, task_id: str) -> CancelOutcome:
        answer = int(self._cancel(keys=[self.key(task_id)]))
        return {-1: "unknown", 0: "started", 1: "cancelled", 2: "already cancelled"}[answer]  # type: ignore[return-value]
