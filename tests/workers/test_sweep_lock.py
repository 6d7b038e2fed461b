"""Sweeps that outlive their lock's timeout, on a real Redis: the lock is kept for the whole
sweep (no second sweeper meanwhile), and a sweep whose lock was lost stops before its next
step, leaving the rest to the next sweep."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from workers.deadlines import DeadlineIndex
from workers.parking import ParkedJob, ParkingLot

pytestmark = pytest.mark.redis

LOCK_TIMEOUT = 0.3
STEP = 0.15  # five steps: 0.75 s, well past the lock's timeout


def index_with_due_jobs(client: redis.Redis, prefix: str, count: int = 5) -> DeadlineIndex:
    index = DeadlineIndex(client, prefix, lock_timeout=LOCK_TIMEOUT)
    for i in range(count):
        index.add("echo", f"job-{i}", 100.0, {"model": "echo", "text": str(i), "deadline": 100.0})
    return index


def test_a_deadline_sweep_longer_than_its_lock_keeps_it(redis_client: redis.Redis, key_prefix: str) -> None:
    index = index_with_due_jobs(redis_client, key_prefix)
    rival = DeadlineIndex(redis_client, key_prefix, lock_timeout=LOCK_TIMEOUT)
    sent: list[str] = []
    rival_sent: list[int] = []

    def resend(task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        time.sleep(STEP)
        rival_sent.append(rival.sweep("echo", lambda *a: sent.append("rival"), now=200.0))
        sent.append(task_id)

    assert index.sweep("echo", resend, now=200.0) == 5
    assert sent == [f"job-{i}" for i in range(5)] and rival_sent == [0] * 5
    assert not redis_client.exists(f"{index.key('echo')}:lock")


def test_a_deadline_sweep_that_lost_its_lock_stops_cleanly(redis_client: redis.Redis, key_prefix: str) -> None:
    index = index_with_due_jobs(redis_client, key_prefix)
    lock = f"{index.key('echo')}:lock"
    sent: list[str] = []

    def resend(task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        redis_client.set(lock, "another sweeper", px=10_000)  # ours lapsed and was taken
        sent.append(task_id)

    assert index.sweep("echo", resend, now=200.0) == 1
    assert sent == ["job-0"]
    assert redis_client.get(lock) == b"another sweeper"  # not ours to release
    assert redis_client.llen(index.reroute_key("echo")) == 4  # left for the next sweep
    redis_client.delete(lock)
    assert index.sweep("echo", lambda task_id, *_: sent.append(task_id), now=200.0) == 4
    assert sent == [f"job-{i}" for i in range(5)]


def test_sending_on_parked_jobs_longer_than_its_lock_keeps_it(redis_client: redis.Redis, key_prefix: str) -> None:
    lot = ParkingLot(redis_client, key_prefix, lock_timeout=LOCK_TIMEOUT)
    rival = ParkingLot(redis_client, key_prefix, lock_timeout=LOCK_TIMEOUT)
    for i in range(5):
        lot.park(ParkedJob(task_id=f"job-{i}", model="echo", job={"model": "echo", "text": str(i)}, reason="open"))
    sent: list[str] = []
    rival_sent: list[int] = []

    def send(entry: ParkedJob) -> None:
        time.sleep(STEP)
        rival_sent.append(rival.send_on("echo", lambda e: sent.append("rival")))
        sent.append(entry.task_id)

    assert lot.send_on("echo", send) == 5
    assert sorted(sent) == [f"job-{i}" for i in range(5)] and rival_sent == [0] * 5
    assert lot.count("echo") == 0 and not redis_client.exists(f"{lot.key('echo')}:lock")


def test_sending_on_that_lost_its_lock_stops_cleanly(redis_client: redis.Redis, key_prefix: str) -> None:
    lot = ParkingLot(redis_client, key_prefix, lock_timeout=LOCK_TIMEOUT)
    for i in range(3):
        lot.park(ParkedJob(task_id=f"job-{i}", model="echo", job={"model": "echo", "text": str(i)}, reason="open"))

    def send(entry: ParkedJob) -> None:
        redis_client.delete(f"{lot.key('echo')}:lock")  # lapsed (a Redis restart, a step too long)

    assert lot.send_on("echo", send) == 1
    assert lot.count("echo") == 2
