"""Breaker stores: :class:`~breaker.backends.redis.RedisBackend` for the fleet,
:class:`~breaker.backends.memory.InMemoryBackend` for tests and the local fail-safe."""
