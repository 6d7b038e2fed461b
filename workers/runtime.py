"""Per-process singletons of a worker (or producer): Redis, breakers, runners, stores.

Each is created on first use, so a process only pays for what it touches, and after a fork
(Celery's prefork pool) the child builds its own where it must (runners) and reuses what
is fork-safe (redis-py pools reconnect, Breakers restart their threads).
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache

import redis

from breaker import Breakers
from breaker import connection
from workers.cache import ResultCache
from workers.call_log import CallLog
from workers.deadlines import DeadlineIndex
from workers.faults import Faults, FaultSpec
from workers.lifecycle import JobLedger
from workers.models import MODELS, spec_for
from workers.devices.rules import EjectionRules
from workers.devices.store import DeviceStore
from workers.devices.tracker import DeviceTracker
from workers.outcomes import device_aware
from workers.parking import ParkingLot
from workers.payloads import PayloadStore
from workers.runners.base import ModelRunner
from workers.settings import settings
from workers.stats import JobStats


def worker_id() -> str:
    """This process, as ``host:pid`` (in answers and the call log)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """For payloads, cache, parking and faults: ordinary timeouts (these are data, not the
    breaker's fast path)."""
    return connection.redis_client(settings().redis_url, 5, fail_fast=False)


@lru_cache(maxsize=1)
def breakers() -> Breakers:
    """The workers' breakers: one per model, shared through Redis, with the workers' exception classifier."""
    s = settings()
    return Breakers.from_url(
        s.redis_url, settings=s.breaker_settings(), policies={name: spec.policy for name, spec in MODELS.items()},
        classifier=device_aware(device_tracker().judge),
    )


@lru_cache(maxsize=1)
def device_store() -> DeviceStore:
    """Every device's record (workers/devices)."""
    return DeviceStore(redis_client(), settings().key_prefix, EjectionRules.from_settings(settings()))


@lru_cache(maxsize=1)
def device_tracker() -> DeviceTracker:
    """This process's judge of its device's calls."""
    return DeviceTracker(device_store(), device_store().rules, store_usable=lambda: not breakers().degraded)


@lru_cache(maxsize=1)
def payloads() -> PayloadStore:
    """Uploaded images, by content hash."""
    return PayloadStore(redis_client(), settings().key_prefix, settings().payload_ttl)


class _ChaosOff(Faults):
    """The switches of a worker without ``FUSEBOX_CHAOS``: every one reads as off, whatever
    Redis holds, so that one Redis write cannot make a production fleet fail, stall or leak."""

    def get(self, model: str, worker: str | None = None) -> FaultSpec:
        return FaultSpec()


@lru_cache(maxsize=1)
def faults() -> Faults:
    """The fleet's fault switches (drills), obeyed only where ``FUSEBOX_CHAOS`` is on: the one
    place a worker decides whether to read them."""
    return (Faults if settings().chaos else _ChaosOff)(redis_client(), settings().key_prefix)


_runners: dict[str, ModelRunner] = {}
_runners_lock = threading.Lock()


def runner(name: str, *, fallback: bool = False) -> ModelRunner:
    """The loaded runner of model ``name`` (its degraded path's with ``fallback``)."""
    key = f"fallback.{name}" if fallback else name
    found = _runners.get(key)
    if found is not None:
        return found
    with _runners_lock:
        found = _runners.get(key)
        if found is None:
            spec = spec_for(name)
            make = spec.fallback_runner if fallback else spec.runner
            if make is None:
                raise LookupError(f"model {name!r} has no fallback runner")
            found = make(settings())
            found.load()
            _runners[key] = found
    return found


@lru_cache(maxsize=1)
def result_cache() -> ResultCache:
    """Model answers kept for the fallback."""
    return ResultCache(redis_client(), settings().key_prefix, settings().cache_ttl)


@lru_cache(maxsize=1)
def parking() -> ParkingLot:
    """Jobs waiting for their model to recover."""
    return ParkingLot(redis_client(), settings().key_prefix)


@lru_cache(maxsize=1)
def deadlines() -> DeadlineIndex:
    """Queued jobs by deadline, for the sweep that reroutes the overdue."""
    return DeadlineIndex(redis_client(), settings().key_prefix)


@lru_cache(maxsize=1)
def ledger() -> JobLedger:
    """The record of every accepted job (unknown ids, cancelling)."""
    return JobLedger(redis_client(), settings().key_prefix)


@lru_cache(maxsize=1)
def call_log() -> CallLog | None:
    """The log of model calls, when ``FUSEBOX_TRACE_MODEL_CALLS`` is on."""
    return CallLog(redis_client(), settings().key_prefix) if settings().trace_model_calls else None


@lru_cache(maxsize=1)
def job_stats() -> JobStats:
    """This process's job counters, flushed to Redis for ``/metrics``."""
    def dropped() -> dict[str, int]:
        # Only a process that made guarded calls has outcomes to drop.
        return breakers().health().dropped_by if breakers.cache_info().currsize else {}

    return JobStats(redis_client, settings().key_prefix, dropped_outcomes=dropped)
