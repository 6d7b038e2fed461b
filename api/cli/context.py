"""What the verbs share before they act: settings from the environment, a Redis that
answers, a client, a known model name."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api.cli.output import UserError
from breaker import STORE_ERRORS
from breaker.connection import redact, redis_client
from workers.models import MODELS
from workers.settings import Settings


def fusebox_settings(**overrides: Any) -> Settings:
    """``FUSEBOX_*`` settings, a bad one as a UserError (exit status 2).

    Parameters:
      overrides: values given on the command line, over the environment's.
    """
    from api.cli import bad_setting

    try:
        return Settings.from_env(**overrides)
    except ValidationError as exc:
        raise UserError(f"bad setting {bad_setting(exc)}", 2) from None


def require_redis(settings: Settings) -> None:
    """Raises a UserError unless Redis answers.

    Parameters:
      settings: where Redis is.
    """
    # Without this a command would quietly act on its process-local fail-safe breaker.
    try:
        redis_client(settings.redis_url, 2, fail_fast=False).ping()
    except STORE_ERRORS as exc:
        raise UserError(f"cannot reach Redis at {redact(settings.redis_url)} (FUSEBOX_REDIS_URL): {exc}") from None


def open_client() -> Any:
    """A FuseboxClient on a Redis that answers (the caller closes it)."""
    from api.client import FuseboxClient

    settings = fusebox_settings()
    require_redis(settings)
    return FuseboxClient(settings)


def known_model(name: str) -> str:
    """``name``, if a model (and so a breaker) of that name exists.

    Parameters:
      name: what the user typed.
    """
    if name not in MODELS:
        raise UserError(f"no breaker {name!r}; known: {', '.join(sorted(MODELS))}", 2)
    return name
