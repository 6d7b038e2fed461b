"""The demo's services: a Redis (the one that answers, else one started here), the demo's
environment on it, its two workers, and the removal of its keys at the end."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from api.demo.plan import DEMO_MODELS, DEVICE_ENV, SICK_MODEL
from api.services import RedisServer, WorkerProcess, redis_answers
from breaker.connection import redis_client
from workers.settings import Settings


def use_or_start_redis(stack: ExitStack, prefix: str, note: Callable[[str], None]) -> tuple[str, str]:
    """The Redis at ``FUSEBOX_REDIS_URL`` (default 127.0.0.1:6379) if it answers, else one
    started here and stopped with ``stack``; with ``existing`` or ``started``.

    Parameters:
      stack: what the demo stops on its way out.
      prefix: the demo's key prefix (told to the user).
      note: tells the user what happens.
    """
    url = Settings.from_env().redis_url
    if redis_answers(url):
        note(f"using the Redis that answers at FUSEBOX_REDIS_URL (keys under {prefix}:)")
        return url, "existing"
    note("no Redis answers at FUSEBOX_REDIS_URL: starting one")
    server = stack.enter_context(RedisServer())
    return server.url, "started"


def demo_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The ``FUSEBOX_*`` environment of the demo's client and workers.

    Parameters:
      redis_url: the Redis.
      prefix: the demo's key prefix.
    """
    return {
        "FUSEBOX_REDIS_URL": redis_url,
        "FUSEBOX_KEY_PREFIX": prefix,
        # Queues and results under the demo's prefix too: a real fleet's queues on the
        # same Redis are not touched.
        "FUSEBOX_BROKER_KEY_PREFIX": f"{prefix}:",
        "FUSEBOX_BROKER_URL": "",
        "FUSEBOX_RESULT_URL": "",
        "FUSEBOX_CHAOS": "1",  # the demo's story injects faults; workers ignore them by default
        **DEVICE_ENV,
    }


def start_workers(stack: ExitStack, env: dict[str, str], prefix: str, app: Any) -> str:
    """A model worker (the demo's models loaded), a second, cheap worker for
    :data:`SICK_MODEL` only (its device is the one that falls sick) and a fallback worker;
    each stopped with ``stack``. Returns the second worker's node name once all answer.

    Parameters:
      stack: what the demo stops on its way out.
      env: their environment (:func:`demo_env`).
      prefix: makes their node names the demo's own.
      app: the Celery app that pings them.
    """
    started = {}
    for queues, name in ((list(DEMO_MODELS), "models"), ([SICK_MODEL], SICK_MODEL), (["fallback"], "fallback")):
        worker = WorkerProcess(queues, f"{name}-{prefix}", 1, env)
        stack.callback(worker.stop)
        started[name] = worker.start(app)
    return started[SICK_MODEL].nodename


def remove_keys(url: str, prefix: str) -> None:
    """Deletes every key under ``prefix`` (the demo's, on a Redis it did not start).

    Parameters:
      url: the Redis.
      prefix: the demo's key prefix.
    """
    store = redis_client(url, 5, fail_fast=False)
    try:
        batch = []
        for key in store.scan_iter(f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                store.unlink(*batch)
                batch.clear()
        if batch:
            store.unlink(*batch)
    finally:
        store.close()
