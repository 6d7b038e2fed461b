"""Settings of the HTTP server and its alerts, from ``FUSEBOX_*`` environment variables."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

WebhookFormat = Literal["json", "dingtalk", "wecom"]


class Webhook(BaseModel):
    """Where to send an alert, and in which message format."""

    model_config = ConfigDict(frozen=True)

    format: WebhookFormat = "json"
    url: str = Field(pattern=r"^https?://")
    secret: str | None = Field(None, min_length=1, description="DingTalk robot's signing secret (SEC...)")

    def __repr__(self) -> str:  # the URL carries a token: never in a log line or traceback
        return f"Webhook(format={self.format!r}, url=<redacted>, secret={'<set>' if self.secret else None})"

    __str__ = __repr__


class ApiSettings(BaseModel):
    """Parameters (environment variable in brackets):
      host, port [FUSEBOX_API_HOST, FUSEBOX_API_PORT]: where ``fusebox serve`` listens.
      token [FUSEBOX_API_TOKEN]: bearer token for every endpoint that changes something
        (operator actions, policy changes, job submission). Unset: those endpoints answer
        403, so that a server started without one is read-only rather than open.
      webhooks [FUSEBOX_ALERT_WEBHOOKS]: comma-separated ``format=url`` entries (format
        ``json``, ``dingtalk`` or ``wecom``; a bare url is ``json``); a signed DingTalk
        robot as ``dingtalk:SECxxxx=url`` (its secret after the colon).
      alert_retries [FUSEBOX_ALERT_RETRIES]: attempts per webhook and transition.
      alert_lease [FUSEBOX_ALERT_LEASE]: seconds a sender holds an alert before another
        may take it over (renewed before each attempt).
      alert_replay [FUSEBOX_ALERT_REPLAY]: seconds of past transitions a starting sender
        re-checks (and sends, unless already delivered).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: str | None = None
    webhooks: tuple[Webhook, ...] = ()
    alert_retries: int = Field(4, ge=1, le=20)
    alert_lease: float = Field(30.0, ge=1.0, le=3600.0)
    alert_replay: float = Field(900.0, ge=0.0, le=7 * 24 * 3600.0)

    ENV: ClassVar[dict[str, str]] = {
        "host": "API_HOST",
        "port": "API_PORT",
        "token": "API_TOKEN",
        "webhooks": "ALERT_WEBHOOKS",
        "alert_retries": "ALERT_RETRIES",
        "alert_lease": "ALERT_LEASE",
        "alert_replay": "ALERT_REPLAY",
    }

    @field_validator("webhooks", mode="before")
    @classmethod
    def _parse_webhooks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        hooks = []
        for entry in filter(None, (e.strip() for e in value.split(","))):
            fmt, sep, url = entry.partition("=")
            if not sep or fmt.startswith("http"):
                hooks.append({"url": entry})
                continue
            fmt, colon, secret = fmt.partition(":")
            hooks.append({"format": fmt, "url": url, **({"secret": secret} if colon else {})})
        return hooks

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ApiSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {f: env[f"FUSEBOX_{v}"] for f, v in cls.ENV.items() if env.get(f"FUSEBOX_{v}")}
        values.update(overrides)
        return cls.model_validate(values)
