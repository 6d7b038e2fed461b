"""Per-process counters reach Redis as deltas: nothing counted twice, nothing lost."""

from __future__ import annotations

import redis

from workers import stats
from workers.stats import JobStats


def test_dropped_breaker_outcomes_are_flushed_as_they_grow(redis_client: redis.Redis, key_prefix: str) -> None:
    dropped = {"ocr": 0}
    counter = JobStats(lambda: redis_client, key_prefix, interval=3600, dropped_outcomes=lambda: dict(dropped))
    counter.flush()
    assert stats.read(redis_client, key_prefix, "ocr").get("breaker_outcomes_dropped", 0) == 0
    dropped["ocr"] = 5
    counter.flush()
    dropped["ocr"] = 7
    counter.flush()
    counter.flush()  # no growth: nothing added
    assert stats.read(redis_client, key_prefix, "ocr")["breaker_outcomes_dropped"] == 7
