"""Deadlines of queued jobs: a job still waiting in its model's queue (paused by an OPEN
breaker, or behind a backlog) when its deadline passes is answered by the fallback.

Producers index each job that has a deadline in a sorted set per model. Workers remove the
entry when the job starts. A sweeper (every worker runs one; a lock keeps it to one at a
time per model) takes due entries, finds their messages in the Redis queue list, moves each
atomically to a reroute list, and re-sends it as the model's fallback task under the same
task id. A crash between the move and the re-send leaves the message in the reroute list,
where the next sweep finds it. This needs the Redis broker; with another broker a job's
deadline is checked when a worker picks it up.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any

import redis

log = logging.getLogger(__name__)

_MOVE = resources.files("workers").joinpath("lua/move.lua").read_text()


def decode_message(raw: bytes | str) -> tuple[str, str, list[Any], dict[str, Any]]:
    """(task id, task name, args, kwargs) of a kombu message as the Redis transport stores it
    (Celery task protocol 2, JSON body, base64 transfer encoding)."""
    envelope = json.loads(raw)
    headers = envelope["headers"]
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _embed = json.loads(body)
    return headers["id"], headers["task"], args, kwargs


class DeadlineIndex:
    """Parameters:
      client: the Redis that is also the broker.
      prefix: key prefix.
      grace: seconds after its deadline past which an entry whose message cannot be found
        (taken by a worker that then died; it will be checked when it runs) is forgotten.
    """

    def __init__(self, client: redis.Redis, prefix: str, grace: float = 3600.0) -> None:
        self.client, self.prefix, self.grace = client, prefix, grace
        self._move = client.register_script(_MOVE)

    def key(self, model: str) -> str:
        return f"{self.prefix}:deadlines:{model}"

    def reroute_key(self, model: str) -> str:
        return f"{self.prefix}:reroute:{model}"

    def add(self, model: str, task_id: str, deadline: float) -> None:
        self.client.zadd(self.key(model), {task_id: deadline})

    def remove(self, model: str, task_id: str) -> None:
        self.client.zrem(self.key(model), task_id)

    def sweep(
        self,
        model: str,
        queue: str,
        resend: Callable[[str, list[Any], dict[str, Any]], None],
        now: float | None = None,
        page: int = 500,
    ) -> int:
        """Moves due jobs out of ``queue`` and re-sends them; returns how many were re-sent.

        ``resend(task_id, args, kwargs)`` publishes the fallback task.
        """
        now = time.time() if now is None else now
        lock = f"{self.key(model)}:lock"
        token = uuid.uuid4().hex
        if not self.client.set(lock, token, nx=True, px=5_000):
            return 0
        try:
            due = {_s(m) for m in self.client.zrangebyscore(self.key(model), "-inf", now, start=0, num=1000)}
            if due:
                moved = self._move_due(queue, model, due, page)
                if moved:
                    self.client.zrem(self.key(model), *moved)
                stale = [m for m, score in self.client.zrangebyscore(
                    self.key(model), "-inf", now - self.grace, withscores=True)]
                if stale:
                    self.client.zrem(self.key(model), *stale)
            return self._drain_reroute(model, resend)
        finally:
            self.client.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                1, lock, token,
            )

    def _move_due(self, queue: str, model: str, due: set[str], page: int) -> list[str]:
        moved: list[str] = []
        length = int(self.client.llen(queue))
        for start in range(0, length, page):
            for raw in self.client.lrange(queue, start, start + page - 1):
                try:
                    task_id = json.loads(raw)["headers"]["id"]
                except (ValueError, KeyError, TypeError):
                    continue  # not a Celery message; leave it alone
                if task_id in due and self._move(keys=[queue, self.reroute_key(model)], args=[raw]):
                    moved.append(task_id)
        return moved

    def _drain_reroute(self, model: str, resend: Callable[[str, list[Any], dict[str, Any]], None]) -> int:
        sent = 0
        for raw in self.client.lrange(self.reroute_key(model), 0, -1):
            try:
                task_id, _name, args, kwargs = decode_message(raw)
            except (ValueError, KeyError, TypeError):
                log.exception("unreadable message in %s; left there", self.reroute_key(model))
                continue
            resend(task_id, args, kwargs)
            self.client.lrem(self.reroute_key(model), 1, raw)
            sent += 1
        return sent


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
