"""The deadline index on a real Redis: who owns a job whose deadline passes while queued."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from workers.deadlines import DeadlineIndex

pytestmark = pytest.mark.redis


def job(text: str, deadline: float) -> dict[str, Any]:
    return {"model": "echo", "text": text, "deadline": deadline}


def test_a_due_job_is_rerouted_once_and_its_leftover_message_is_dropped(redis_client: redis.Redis,
                                                                          key_prefix: str) -> None:
    index = DeadlineIndex(redis_client, key_prefix)
    index.add("echo", "due", 100.0, job("late", 100.0))
    index.add("echo", "later", 300.0, job("on time", 300.0))
    sent: list[tuple[str, list[Any]]] = []
    assert index.sweep("echo", lambda task_id, args, kwargs: sent.append((task_id, args)), now=200.0) == 1
    assert sent == [("due", [job("late", 100.0)])]
    # A second sweep finds nothing more; the worker that takes the leftover message drops it.
    assert index.sweep("echo", lambda *a: sent.append(a), now=200.0) == 0
    assert index.claim("echo", "due") == "rerouted"
    # The job not yet due belongs to the worker that takes it: the sweeper leaves it alone.
    assert index.claim("echo", "later") == "run"
    assert index.sweep("echo", lambda *a: sent.append(a), now=400.0) == 0
    assert len(sent) == 1 and index.pending("echo") == 0
    assert not redis_client.hlen(index.jobs_key("echo"))


def test_a_job_never_indexed_runs(redis_client: redis.Redis, key_prefix: str) -> None:
    assert DeadlineIndex(redis_client, key_prefix).claim("echo", "unindexed") == "run"


def test_a_crash_between_taking_and_resending_resends_on_the_next_sweep(redis_client: redis.Redis,
                                                                          key_prefix: str) -> None:
    index = DeadlineIndex(redis_client, key_prefix)
    index.add("echo", "due", 100.0, job("late", 100.0))

    def crash(*_: Any) -> None:
        raise ConnectionError("publisher died")

    with pytest.raises(ConnectionError):
        index.sweep("echo", crash, now=200.0)
    redis_client.delete(f"{index.key('echo')}:lock")  # the dead sweeper's lock
    assert index.claim("echo", "due") == "rerouted"  # already owned by the reroute
    sent: list[str] = []
    assert index.sweep("echo", lambda task_id, args, kwargs: sent.append(task_id), now=201.0) == 1
    assert sent == ["due"]
    assert redis_client.llen(index.reroute_key("echo")) == 0


def test_bodies_travel_as_json(redis_client: redis.Redis, key_prefix: str) -> None:
    index = DeadlineIndex(redis_client, key_prefix)
    body = job("好评 \"quoted\"", 1.0)
    index.add("echo", "x", 1.0, body)
    got: list[Any] = []
    index.sweep("echo", lambda task_id, args, kwargs: got.append(args[0]), now=2.0)
    assert got == [json.loads(json.dumps(body))]
