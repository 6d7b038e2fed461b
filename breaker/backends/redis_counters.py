"""What the Redis backend writes and reads outside its scripts: refusals a process decided
from its pushed state (counted without a script: nothing is decided), and the per-second
history that ``lua/shadow.lua`` records for ``fusebox breaker what-if``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import redis

from breaker.errors import OutcomeUncertain
from breaker.keyspace import Keyspace


class RedisCounters:
    """Mixed into :class:`~breaker.backends.redis.RedisBackend` (which sets these)."""

    client: redis.Redis
    keys: Keyspace
    _clock: Callable[[], float] | None
    _scripts: dict[str, Any]

    def count_rejections(self, counts: Mapping[str, int]) -> None:
        """Adds refusals decided from the pushed state (no script decided them) to each
        breaker's ``rejected`` total, exactly once (``lua/refusals.lua``).

        Raises:
          OutcomeUncertain: a call failed (the connection, or the store refused one partway:
            OOM, READONLY); ``batches`` holds, per breaker in the order of ``counts``, the id
            of its call, since the earlier calls did run (ask :meth:`applied_batches`).
        """
        script = self._scripts["refusals"]
        batches = [os.urandom(8).hex() for _ in counts]
        clock = "" if self._clock is None else int(self._clock() * 1000)
        try:
            for (name, n), batch in zip(counts.items(), batches):
                keys = self.keys.breaker(name)
                script(keys=[keys[0], keys[6]], args=[batch, n, clock])
        except (redis.RedisError, OSError) as exc:
            raise OutcomeUncertain(exc, batches) from exc

    def history_buckets(self, name: str, hours: int = 24) -> dict[int, tuple[int, int, int]]:
        """The recorded calls, failures and slow calls per second (store time) of the last
        ``hours`` hours (``lua/shadow.lua``), oldest first."""
        seconds, _ = self.client.time()
        now_h = (int(self._clock()) if self._clock else int(seconds)) // 3600
        hours_read = range(now_h - hours, now_h + 1)
        pipe = self.client.pipeline(transaction=False)
        for hour in hours_read:
            pipe.hgetall(self.keys.history(name, hour))
        buckets: dict[int, tuple[int, int, int]] = {}
        for hour, fields in zip(hours_read, pipe.execute()):
            for field, value in sorted(fields.items(), key=lambda kv: int(kv[0])):
                packed = int(value)
                buckets[hour * 3600 + int(field)] = (packed & 0xFFFFF, (packed >> 20) & 0xFFFFF, packed >> 40)
        return buckets
