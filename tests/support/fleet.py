"""A fleet of real Celery workers on a Redis of its own, for the worker tests.

Queue names (``ocr``, ``echo``, ``fallback``) are global in a broker, so worker tests never
share one: each fleet starts its own redis-server (breakers, results, and the broker unless
``broker="rabbitmq"``: then jobs travel on a RabbitMQ vhost of the fleet's own).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from api.client import FuseboxClient
from tests.support.redis_server import RedisServer
from tests.support.worker_process import WorkerProcess
from breaker import BreakerPolicy, CircuitBreaker, State
from tests.support.waiting import wait_for
from workers import broker as broker_io
from workers.app import queue_names
from workers.faults import SWITCH_TTL, Faults, FaultSpec
from workers.models import MODELS
from workers.settings import Settings


def fresh(fleet: "Fleet") -> Iterator["Fleet"]:
    """A shared fleet for one test: reset before, every worker still alive after."""
    fleet.reset()
    yield fleet
    for worker in fleet.workers:
        assert worker.running, f"worker {worker.name} died; log:\n{worker.log()[-3000:]}"


class Fleet:
    """Parameters:
      persistent: the Redis keeps an fsynced append-only file (restart tests).
      broker: ``redis`` (the fleet's Redis) or ``rabbitmq`` (a fresh vhost on the test
        RabbitMQ, tests.support.rabbit; the caller skips when there is none).
      env: more FUSEBOX_* variables for the client and every worker.
    """

    def __init__(self, persistent: bool = False, broker: str = "redis", **env: str) -> None:
        self.broker = broker
        self.vhost: str | None = None
        self.redis = RedisServer(persistent=persistent).start()
        self.prefix = f"fleet-{uuid.uuid4().hex[:8]}"
        broker_env = {}
        if broker == "rabbitmq":
            from tests.support.rabbit import rabbit

            self.vhost = rabbit().add_vhost()
            broker_env["FUSEBOX_BROKER_URL"] = rabbit().vhost_url(self.vhost)
        self.env = {
            "FUSEBOX_REDIS_URL": self.redis.url,
            "FUSEBOX_KEY_PREFIX": self.prefix,
            "FUSEBOX_TRACE_MODEL_CALLS": "1",
            "FUSEBOX_PRELOAD": "none",
            "FUSEBOX_CHAOS": "1",  # the tests' workers obey fault switches (off by default)
            **broker_env,
            **env,
        }
        self.settings = Settings.from_env(self.env)
        self.client = FuseboxClient(self.settings)
        self.client.breakers.wait_until_subscribed(10)
        self.db = redis.Redis.from_url(self.redis.url)
        self.faults = Faults(self.db, self.prefix)
        self.workers: list[WorkerProcess] = []

    def start(self, queues: list[str], name: str, concurrency: int = 1, **env: str) -> WorkerProcess:
        worker = WorkerProcess(queues, f"{name}-{self.prefix}", concurrency, {**self.env, **env})
        worker.start(self.client.app)
        self.workers.append(worker)
        return worker

    def breaker(self, model: str) -> CircuitBreaker:
        return self.client.breakers.get(model)

    def use_policy(self, model: str, **changes: Any) -> BreakerPolicy:
        policy = BreakerPolicy.model_validate({**MODELS[model].policy.model_dump(), **changes})
        self.breaker(model).set_policy(policy)
        return policy

    def fault(self, model: str, **spec: Any) -> None:
        """Sets a fault switch and waits until every worker has seen it."""
        self.faults.set(model, FaultSpec(**spec))
        time.sleep(SWITCH_TTL + 0.05)

    def clear_fault(self, model: str) -> None:
        self.faults.clear(model)
        time.sleep(SWITCH_TTL + 0.05)

    def state(self, model: str) -> State:
        return self.breaker(model).snapshot().state

    def wait_state(self, model: str, state: State, timeout: float = 20.0) -> bool:
        return bool(wait_for(lambda: self.state(model) == state, timeout))

    def active_queues(self, worker: WorkerProcess) -> list[str]:
        replies = self.client.app.control.inspect([worker.nodename], timeout=2).active_queues() or {}
        return sorted(q["name"] for q in replies.get(worker.nodename, []))

    def model_calls(self, model: str) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.db.xrange(f"{self.prefix}:model-calls:{model}")]

    def control_log(self) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.db.xrange(f"{self.prefix}:control")]

    def queued(self, queue: str) -> int:
        """Messages waiting in a queue, as the broker counts them (Redis or RabbitMQ)."""
        return broker_io.queue_depths(self.settings, [queue])[queue]

    def unacked(self) -> int:
        """Messages taken by a worker and not yet acknowledged."""
        if self.vhost is not None:
            from tests.support.rabbit import rabbit

            return rabbit().unacked(self.vhost)
        return int(self.db.hlen(self.settings.broker_keys + "unacked"))

    def reset(self) -> None:
        """Between tests: no faults, no stored policies, breakers CLOSED, nothing parked."""
        for model in MODELS:
            self.faults.clear(model)
            self.faults.clear(f"fallback.{model}")
            self.breaker(model).clear_policy()
            self.breaker(model).reset(reason="test reset")
            self.db.delete(f"{self.prefix}:parked:{model}", f"{self.prefix}:model-calls:{model}")
        self.db.delete(f"{self.prefix}:control")
        time.sleep(SWITCH_TTL + 0.05)  # every worker sees the switches off
        broker_io.purge(self.settings, queue_names())

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.client.close()
        self.redis.stop()
        if self.vhost is not None:
            from tests.support.rabbit import rabbit

            rabbit().delete_vhost(self.vhost)
