"""Model results by content hash: what the fallback serves when it has seen the input."""

from __future__ import annotations

import json
from typing import Any

import redis


class ResultCache:
    """Parameters:
      client: Redis.
      prefix: key prefix.
      ttl: seconds a result is kept.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: int) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl

    def key(self, model: str, content_hash: str) -> str:
        return f"{self.prefix}:cache:{model}:{content_hash}"

    def put(self, model: str, content_hash: str, output: dict[str, Any]) -> None:
        self.client.set(self.key(model, content_hash), json.dumps(output), ex=self.ttl)

    def get(self, model: str, content_hash: str) -> dict[str, Any] | None:
        raw = self.client.get(self.key(model, content_hash))
        return json.loads(raw) if raw else None
