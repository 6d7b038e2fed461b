"""Deadlines of queued jobs: a job still waiting in its model's queue (paused by an OPEN
breaker, or behind a backlog) when its deadline passes is answered by the fallback.

It works the same on every broker and never reads the broker's storage. Producers index
each job that has a deadline: its task id in a sorted set per model (scored by deadline)
and its body in a hash. Whoever takes the entry out of the sorted set owns the job:

- a worker that picks the job up claims it (:meth:`DeadlineIndex.claim`) and runs it;
- a sweeper (every worker runs one; a lock held across the sweep keeps it to one at a time
  per model: workers.sweep_lock) takes due entries, marks each job *rerouted* and moves its
  body to a reroute list, all in one Lua script, then re-sends each as the model's fallback
  task under the same task id. A crash between the two leaves the body in the reroute
  list, where the next sweep finds it.

The rerouted job's original message stays in the model's queue (RabbitMQ cannot take one
message out of the middle of a queue, and the Redis broker's lists are kombu's business):
when a worker finally takes it, the claim answers REROUTED and the worker drops it without
running it. The queue depth counts such messages until then.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import redis

from breaker.keyspace import Keyspace
from workers.sweep_lock import SweepLock

log = logging.getLogger(__name__)

Claim = Literal["run", "rerouted"]

# KEYS: deadlines zset, bodies hash, reroute list. ARGV: now, limit, marker prefix, marker ttl.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local body = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('SET', ARGV[3] .. id, '1', 'EX', tonumber(ARGV[4]))
  if body then
    redis.call('RPUSH', KEYS[3], cjson.encode({id = id, job = body}))
  end
end
return #due
"""

# KEYS: deadlines zset, bodies hash, the job's rerouted marker. ARGV: task id.
_CLAIM = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed == 1 then return 1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
return 0
"""


class DeadlineIndex:
    """Parameters:
      client: the Redis of fusebox's keys (any broker).
      prefix: key prefix.
      marker_ttl: seconds a rerouted job's marker is kept (its original message must be
        taken from the queue within that time to be recognised; a week by default, like
        results).
      lock_timeout: seconds the sweep's lock lasts between two of its steps.
    """

    def __init__(
        self, client: redis.Redis, prefix: str, marker_ttl: int = 7 * 24 * 3600, lock_timeout: float = 5.0
    ) -> None:
        self.client, self.prefix, self.marker_ttl, self.lock_timeout = client, prefix, marker_ttl, lock_timeout
        self.keys = Keyspace(prefix)
        self._take_due = client.register_script(_TAKE_DUE)
        self._claim = client.register_script(_CLAIM)

    def key(self, model: str) -> str:
        return self.keys.deadlines(model)

    def jobs_key(self, model: str) -> str:
        return self.keys.deadline_jobs(model)

    def reroute_key(self, model: str) -> str:
        return self.keys.reroute(model)

    def marker_prefix(self) -> str:
        return self.keys.rerouted_prefix

    def add(self, model: str, task_id: str, deadline: float, job: dict[str, Any]) -> None:
        """Indexes a job before it is published (so that no worker can take it unindexed)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.jobs_key(model), task_id, json.dumps(job))
        pipe.zadd(self.key(model), {task_id: deadline})
        pipe.execute()

    def remove(self, model: str, task_id: str) -> None:
        """Forgets a job (cancelled): the sweeper will not reroute it."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.key(model), task_id)
        pipe.hdel(self.jobs_key(model), task_id)
        pipe.execute()

    def claim(self, model: str, task_id: str) -> Claim:
        """Called by the worker that takes a job with a deadline: ``run`` when it may run it
        (it took the entry, or the job was never indexed), ``rerouted`` when the sweeper
        already handed it to the fallback."""
        answer = int(self._claim(keys=[self.key(model), self.jobs_key(model), self.marker_prefix() + task_id],
                                 args=[task_id]))
        return "rerouted" if answer < 0 else "run"

    def pending(self, model: str) -> int:
        """Jobs with a deadline that no worker has taken yet."""
        return int(self.client.zcard(self.key(model)))

    def sweep(
        self,
        model: str,
        resend: Callable[[str, list[Any], dict[str, Any]], None],
        now: float | None = None,
        limit: int = 1000,
    ) -> int:
        """Reroutes due jobs to the fallback; returns how many were re-sent.

        ``resend(task_id, args, kwargs)`` publishes the fallback task (``args`` is
        ``[job]``).
        """
        now = time.time() if now is None else now
        lock = SweepLock(self.client, self.keys.deadlines_lock(model), self.lock_timeout)
        if not lock.acquire():
            return 0
        try:
            self._take_due(keys=[self.key(model), self.jobs_key(model), self.reroute_key(model)],
                           args=[repr(now), limit, self.marker_prefix(), self.marker_ttl])
            return self._drain_reroute(model, resend, lock)
        finally:
            lock.release_if_held()

    def _drain_reroute(
        self, model: str, resend: Callable[[str, list[Any], dict[str, Any]], None], lock: SweepLock
    ) -> int:
        sent = 0
        for raw in self.client.lrange(self.reroute_key(model), 0, -1):
            if not lock.still_held():
                break
            try:
                entry = json.loads(raw)
                task_id, job = str(entry["id"]), json.loads(entry["job"])
            except (ValueError, KeyError, TypeError):
                log.exception("unreadable entry in %s; left there", self.reroute_key(model))
                continue
            resend(task_id, [job], {})
            self.client.lrem(self.reroute_key(model), 1, raw)
            sent += 1
        return sent
