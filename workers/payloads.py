"""Uploaded bytes, stored in Redis under their SHA-256 until the jobs that need them ran."""

from __future__ import annotations

import redis

from breaker.keyspace import Keyspace
from workers.errors import PayloadMissing
from workers.hashing import content_hash


class PayloadStore:
    """Parameters:
      client: Redis (the same that holds the breakers and results).
      prefix: key prefix.
      ttl: seconds a payload is kept; storing the same bytes again renews it.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: int) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl
        self.keys = Keyspace(prefix)

    def key(self, digest: str) -> str:
        return self.keys.payload(digest)

    def put(self, data: bytes) -> str:
        digest = content_hash(data)
        self.client.set(self.key(digest), data, ex=self.ttl)
        return digest

    def get(self, digest: str) -> bytes:
        data = self.client.get(self.key(digest))
        if data is None:
            raise PayloadMissing(
                f"payload {digest[:12]}... is not in the store (expired after its TTL, or never uploaded)"
            )
        return bytes(data)
