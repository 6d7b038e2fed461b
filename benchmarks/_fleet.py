"""A private Redis and real workers for the benchmarks (the same machinery as the tests)."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from api.client import FuseboxClient
from api.services import RedisServer, WorkerProcess
from workers.settings import Settings


class BenchFleet:
    def __init__(self, **env: str) -> None:
        self.redis = RedisServer().start()
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        # FUSEBOX_CHAOS: the benchmarks' drills set fault switches, which workers ignore by default.
        self.env = {"FUSEBOX_REDIS_URL": self.redis.url, "FUSEBOX_KEY_PREFIX": self.prefix, "FUSEBOX_CHAOS": "1", **env}
        self.settings = Settings.from_env(self.env)
        self.client = FuseboxClient(self.settings)
        self.client.breakers.wait_until_subscribed(10)
        self.db = redis.Redis.from_url(self.redis.url)
        self.workers: list[WorkerProcess] = []

    def start(self, queues: list[str], name: str, concurrency: int = 1, **kwargs: Any) -> WorkerProcess:
        env = {**self.env, **kwargs.pop("env", {})}
        worker = WorkerProcess(queues, f"{name}-{self.prefix}", concurrency, env, **kwargs)
        worker.start(self.client.app)
        self.workers.append(worker)
        return worker

    def control_log(self) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.db.xrange(f"{self.prefix}:control")]

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.client.close()
        self.redis.stop()

    def __enter__(self) -> BenchFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
