"""Job counters of every worker process, summed in Redis for the metrics endpoint.

Prefork-safe the simple way: each process counts in memory and a thread adds its deltas to
a Redis hash per model every second (HINCRBY), so nothing is shared between processes and
nothing is lost when one is recycled (it flushes on shutdown). ``api.metrics`` turns the
hashes into Prometheus counters and a latency histogram.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable

import redis

from breaker import STORE_ERRORS
from breaker.keyspace import Keyspace

log = logging.getLogger(__name__)

#: Upper bounds (ms) of the job-latency histogram's buckets, submission to answer.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)


def bucket_of(ms: float) -> str:
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"le_{bound}"
    return "le_inf"


class JobStats:
    """Parameters:
      client: returns the Redis client to flush to (created lazily, after a fork).
      prefix: key prefix; the hash of a model is ``<prefix>:stats:<model>``.
      interval: seconds between flushes.
    """

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        prefix: str,
        interval: float = 1.0,
        dropped_outcomes: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Parameters (besides the above):
          dropped_outcomes: this process's breaker outcomes dropped so far, per model
            (cumulative); their growth is added to field ``breaker_outcomes_dropped``."""
        self._client, self.prefix, self.interval = client, prefix, interval
        self.keys = Keyspace(prefix)
        self._dropped_source = dropped_outcomes
        self._dropped_seen: dict[str, int] = {}
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}
        self._sums: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def key(self, model: str) -> str:
        return self.keys.stats(model)

    def _ensure(self) -> None:
        if self._pid != os.getpid():
            self._reset()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fusebox-job-stats", daemon=True)
            self._thread.start()

    def answered(self, model: str, served_by: str, total_ms: float | None) -> None:
        """A job got its answer (from the model, the cache or a fallback)."""
        self._ensure()
        with self._lock:
            c = self._counts.setdefault(model, Counter())
            c["jobs"] += 1
            c[f"served:{served_by}"] += 1
            if served_by != "model":
                c["degraded"] += 1
            if total_ms is not None:
                c[f"latency:{bucket_of(total_ms)}"] += 1
                c["latency:count"] += 1
                self._sums[model] = self._sums.get(model, 0.0) + total_ms

    def failed(self, model: str, error: str) -> None:
        """A job ended with an error for its caller (bad input, or nothing could answer)."""
        self._ensure()
        with self._lock:
            self._counts.setdefault(model, Counter())[f"error:{error}"] += 1

    def _note_dropped(self) -> None:
        if self._dropped_source is None:
            return
        try:
            now = dict(self._dropped_source())
        except Exception:  # noqa: BLE001 - metrics must never break a worker
            return
        with self._lock:
            for model, total in now.items():
                grown = total - self._dropped_seen.get(model, 0)
                if grown > 0:
                    self._counts.setdefault(model, Counter())["breaker_outcomes_dropped"] += grown
            self._dropped_seen = now

    def flush(self) -> None:
        self._note_dropped()
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = {}, {}
        if not counts and not sums:
            return
        try:
            pipe = self._client().pipeline(transaction=False)
            for model, c in counts.items():
                for field, n in c.items():
                    pipe.hincrby(self.key(model), field, n)
            for model, total in sums.items():
                pipe.hincrbyfloat(self.key(model), "latency:sum_ms", total)
            pipe.execute()
        except STORE_ERRORS as exc:
            log.warning("job statistics kept for the next flush: %s", exc)
            with self._lock:  # put them back: counted late, not lost
                for model, c in counts.items():
                    self._counts.setdefault(model, Counter()).update(c)
                for model, total in sums.items():
                    self._sums[model] = self._sums.get(model, 0.0) + total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def read(client: redis.Redis, prefix: str, model: str) -> dict[str, float]:
    raw = client.hgetall(Keyspace(prefix).stats(model))
    return {k.decode(): float(v) for k, v in raw.items()}
