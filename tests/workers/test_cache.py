"""The result cache is keyed on the model's version: an upgrade stops old answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from workers.cache import ResultCache, model_files, version_of
from workers.jobs import Job
from workers.settings import Settings

pytestmark = pytest.mark.redis


def test_a_model_upgrade_stops_serving_the_old_models_answers(redis_client: redis.Redis, key_prefix: str) -> None:
    cache = ResultCache(redis_client, key_prefix, ttl=60)
    digest = Job(model="sentiment", text="好评").content_hash
    cache.put("sentiment", "v1", digest, {"label": "positive"})
    assert cache.get("sentiment", digest) == {"label": "positive"}  # as published by the model workers
    # A worker with new weights answers something else and publishes its version.
    cache.put("sentiment", "v2", Job(model="sentiment", text="other").content_hash, {"label": "negative"})
    assert cache.get("sentiment", digest) is None
    assert cache.get("sentiment", digest, version="v1") == {"label": "positive"}


def test_the_version_is_a_hash_of_the_weights_and_features(tmp_path: Path) -> None:
    shipped = model_files("sentiment", Settings())[0]
    copy = tmp_path / "sentiment"
    shutil.copytree(shipped, copy)
    before = version_of("sentiment", [copy])
    assert before == version_of("sentiment", [shipped])  # same files, same version, any host
    weights = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.stat().st_size > 0)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert version_of("sentiment", [copy]) != before
    assert version_of("ner", [copy]) != version_of("sentiment", [copy])
