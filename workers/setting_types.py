"""The structured values of fusebox's settings (workers.settings): alert webhooks and named
API tokens, how each is written in its environment variable, and what is refused. Both
hold secrets, so neither ever shows its value in an error or a ``repr``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

WebhookFormat = Literal["json", "dingtalk", "wecom"]
#: The shortest bearer token accepted: 16 characters (``secrets.token_urlsafe(12)``).
MIN_TOKEN_LENGTH = 16
_CALLER = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


class Webhook(BaseModel):
    """Where to send an alert, and in which message format."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)  # the URL holds a token

    format: WebhookFormat = "json"
    url: str = Field(pattern=r"^https?://")
    secret: str | None = Field(None, min_length=1, description="DingTalk robot's signing secret (SEC...)")

    def __repr__(self) -> str:  # the URL carries a token: never in a log line or traceback
        return f"Webhook(format={self.format!r}, url=<redacted>, secret={'<set>' if self.secret else None})"

    __str__ = __repr__


def parse_webhooks(value: Any) -> Any:
    """``FUSEBOX_ALERT_WEBHOOKS``: ``format=url,...`` (``dingtalk:SECRET=url`` when signed;
    a bare URL is ``json``)."""
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


def parse_tokens(value: Any) -> Any:
    """``FUSEBOX_API_TOKENS``: ``name=token,...``."""
    if not isinstance(value, str):
        return value
    tokens: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        name, sep, token = entry.partition("=")
        if not sep or not _CALLER.match(name):
            raise ValueError("write `name=token,...`, each name of letters, digits, `_`, `.` or `-`")
        tokens[name] = token
    return tokens


def check_tokens(tokens: dict[str, str]) -> dict[str, str]:
    """Named tokens: a caller name the audit can show, and a token long enough to resist guessing."""
    for name, token in tokens.items():
        if not _CALLER.match(name):
            raise ValueError(f"caller name {name!r}: letters, digits, `_`, `.` or `-`, at most 32")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token of {name!r} is shorter than {MIN_TOKEN_LENGTH} characters")
    return tokens
