"""What the Redis backend writes and reads outside its scripts: refusals a process decided
from its pushed state (counted without a script: nothing is decided), and the per-second
history that ``lua/shadow.lua`` records for ``fusebox breaker what-if``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import redis

from breaker.keyspace import Keyspace


class RedisCounters:
    """Mixed into :class:`~breaker.backends.redis.RedisBackend` (which sets these)."""

    client: redis.Redis
    keys: Keyspace
    _clock: Callable[[], float] | None

    def count_rejections(self, counts: Mapping[str, int]) -> None:
        """Adds refusals decided from the pushed state (no script ran for them) to each
        breaker's ``rejected`` total, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name, n in counts.items():
            pipe.hincrby(self.keys.breaker(name)[0], "n_rejected", n)
        pipe.execute()

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
