"""Model results by model version and content hash: what the fallback serves when it has
seen the input.

An answer belongs to the model that gave it: the key holds the model's *version* (a hash
of its weights and feature files), so that after an upgrade the cache stops serving the old
model's answers. Model workers compute their version from the files they load and publish
it (``<prefix>:model-version:<model>``); the fallback, which may run on a host without those
files, looks answers up under the version the model workers published.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis

from breaker.keyspace import Keyspace
from workers.settings import Settings, settings


def model_files(model: str, s: Settings) -> list[Path]:
    """The directories whose files make a model what it is (none for ``echo``)."""
    if model == "ocr":
        return list(s.ocr_model_dirs())
    if model in ("sentiment", "ner"):
        return [s.nlp_models_dir / model]
    return []


def version_of(model: str, paths: list[Path]) -> str:
    """A short hash of every file under ``paths`` (names and contents), with the model's
    name: the same files give the same version on every host."""
    h = hashlib.sha256(model.encode() + b"\0")
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            h.update(str(path.relative_to(root) if root.is_dir() else path.name).encode() + b"\0")
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def model_version(model: str) -> str:
    """This process's version of ``model``, computed once."""
    return version_of(model, model_files(model, settings()))


class ResultCache:
    """Parameters:
      client: Redis.
      prefix: key prefix.
      ttl: seconds a result (and a published version) is kept.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: int) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl
        self.keys = Keyspace(prefix)

    def key(self, model: str, version: str, content_hash: str) -> str:
        return self.keys.cached_result(model, version, content_hash)

    def version_key(self, model: str) -> str:
        return self.keys.model_version(model)

    def put(self, model: str, version: str, content_hash: str, output: dict[str, Any]) -> None:
        """Stores a model's answer, and publishes ``version`` as the model's current one."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(model, version, content_hash), json.dumps(output), ex=self.ttl)
        pipe.set(self.version_key(model), version, ex=self.ttl)
        pipe.execute()

    def current_version(self, model: str) -> str | None:
        raw = self.client.get(self.version_key(model))
        return raw.decode() if isinstance(raw, bytes) else raw

    def get(self, model: str, content_hash: str, version: str | None = None) -> dict[str, Any] | None:
        """The answer of ``version`` (by default the one the model workers published)."""
        version = version or self.current_version(model)
        if version is None:
            return None
        raw = self.client.get(self.key(model, version, content_hash))
        return json.loads(raw) if raw else None
