"""How the breaker client reaches the shared breakers: the library's own settings.

The library reads no environment variable: its caller builds these (fusebox's workers and
producers from ``workers.settings.Settings.breaker_settings``, which reads the
``FUSEBOX_BREAKER_*`` variables).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from breaker.connection import check_redis_url


class BreakerSettings(BaseModel):
    """How a process reaches the shared breakers.

    Parameters (the fusebox environment variable that sets each in brackets):
      redis_url [FUSEBOX_REDIS_URL]: ``redis://``, ``rediss://`` (TLS) or
        ``redis://:password@host:port/db``; also ``unix://`` sockets, and Redis Sentinel
        as ``sentinel://host:26379;sentinel://host2:26379/0?master_name=NAME`` (see
        :mod:`breaker.connection`).
      key_prefix [FUSEBOX_KEY_PREFIX]: first part of every key and of the events channel.
      redis_timeout [FUSEBOX_BREAKER_REDIS_TIMEOUT]: seconds any one breaker call to Redis
        may take before the process decides with its local breaker instead.
      refresh_interval [FUSEBOX_BREAKER_REFRESH_INTERVAL]: seconds between re-reads of the
        breakers' states, the safety net under pub/sub.
      reconnect_interval [FUSEBOX_BREAKER_RECONNECT_INTERVAL]: seconds between attempts to
        reach Redis again while running on the local breaker.
      stream_maxlen [FUSEBOX_BREAKER_STREAM_MAXLEN]: roughly how many events the history
        stream keeps.
      record_linger [FUSEBOX_BREAKER_RECORD_LINGER]: seconds a busy process lets outcomes
        gather before writing them in one call (an idle one writes at once); a trip is
        decided at most this much later, in exchange for fewer script calls under load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field("fusebox", pattern=r"^[A-Za-z0-9_.\-:]{1,64}$")
    redis_timeout: float = Field(0.05, gt=0, le=10)
    refresh_interval: float = Field(1.0, gt=0, le=300)
    reconnect_interval: float = Field(0.5, gt=0, le=300)
    stream_maxlen: int = Field(10_000, ge=100)
    record_linger: float = Field(0.02, ge=0, le=1)

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return check_redis_url(url)
