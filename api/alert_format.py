"""What an alert looks like on the wire: the message of each webhook format, the signed
DingTalk URL, how a webhook is named in logs, and whether a receiver accepted a message.

Text that comes from outside (an operator's ``reason``, a caller's name) is escaped before
it goes into a markdown message (DingTalk, WeCom) and bounded in length: a crafted
reason must not render as a heading, a link, an image or an ``<@all>`` mention.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import time
import urllib.parse
from typing import Any, Literal

import httpx

from breaker import BreakerEvent, State
from breaker.events import MAX_REASON
from workers.settings import Webhook

EMOJI = {State.OPEN: "🔴", State.FORCED_OPEN: "⛔", State.HALF_OPEN: "🟡", State.CLOSED: "🟢",
         State.DISABLED: "⚪", State.METRICS_ONLY: "🔵"}

#: ``errcode`` values worth retrying: system busy, and the robots' rate limits (DingTalk:
#: 130101 "send too fast"; WeCom: 45009 "api freq out of limit"). Every other non-zero
#: code (bad token 300001/93000, keyword or signature mismatch 310000...) never succeeds.
RETRYABLE_ERRCODES = {"dingtalk": {-1, 130101}, "wecom": {-1, 45009}}
_SECRET_QUERY = re.compile(r"((?:access_token|key|sign|token|secret|timestamp)=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the values of token-like query parameters replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


def hook_id(hook: Webhook) -> str:
    """A short stable id of a webhook (its claims' key part), which reveals no token."""
    return hashlib.sha256(f"{hook.format}\0{hook.url}".encode()).hexdigest()[:12]


def hook_label(hook: Webhook) -> str:
    """How logs and ``fusebox alerts test`` name a webhook: format, host and id. Never the
    path: Slack, Feishu and Discord keep their secret there."""
    try:
        host = urllib.parse.urlsplit(hook.url).hostname
    except ValueError:
        host = None
    return f"{hook.format} {host or '?'} #{hook_id(hook)}"


def signed_url(hook: Webhook, now_ms: int | None = None) -> str:
    """The URL to post to: for a DingTalk robot with a ``secret`` (its "加签" setting),
    with ``timestamp`` and ``sign`` added per DingTalk's scheme: HMAC-SHA256 keyed with
    the secret over ``"<timestamp>\\n<secret>"``, base64, URL-encoded."""
    if hook.format != "dingtalk" or not hook.secret:
        return hook.url
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hmac.new(hook.secret.encode(), f"{timestamp}\n{hook.secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    return f"{hook.url}{'&' if '?' in hook.url else '?'}timestamp={timestamp}&sign={sign}"


#: Characters that mean something in DingTalk's, WeCom's (and Slack's, Feishu's) markdown
#: anywhere in a line (the text is kept on one line, after a prefix, so ``-``, ``+``, ``1.``
#: cannot start a list, nor ``#`` a heading: they stay as they are).
_MARKDOWN = re.compile(r"([\\`*_\[\]()~|])")


def bounded(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line (no new heading or list item can start), at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def escape_markdown(text: str, limit: int = MAX_REASON) -> str:
    """Outside text made inert in a markdown message: bounded to one line, every markdown
    character backslash-escaped, ``<`` ``>`` ``&`` as entities (no ``<@all>`` mention, no
    HTML), ``@`` followed by a zero-width joiner (no ``@all`` on DingTalk) and ``://`` broken
    (no auto-linked URL)."""
    text = bounded(text, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN.sub(r"\\\1", text)
    return text.replace("@", "@\u200d").replace("://", ":\u200b//")


def summary(event: BreakerEvent) -> str:
    if event.kind == "would_trip":  # METRICS_ONLY shadow: nothing was stopped
        return f"fusebox breaker {event.breaker}: {bounded(event.reason, 200)} (metrics only: no call stopped)"
    frm = event.from_state.value if event.from_state else "?"
    to = event.to_state.value if event.to_state else "?"
    return f"fusebox breaker {event.breaker}: {frm} -> {to} ({bounded(event.reason, 200)})"


def render(event: BreakerEvent, fmt: str) -> dict[str, Any]:
    """The webhook body for one transition, in the receiver's message format."""
    title = summary(event)
    w = event.window
    lines = [
        f"**{event.breaker}: would trip (metrics only, no call stopped)**" if event.kind == "would_trip" else
        f"**{EMOJI.get(event.to_state, '') if event.to_state else ''} {event.breaker}: "
        f"{event.from_state.value if event.from_state else '?'} → {event.to_state.value if event.to_state else '?'}**",
        f"- reason: {escape_markdown(event.reason)}",
        f"- window: {w.calls} calls, {w.failures} failed, {w.slow} slow",
        f"- epoch {event.epoch}, by {escape_markdown(event.who, 100)}",
    ]
    if event.to_state == State.OPEN:
        lines.append(f"- probes after {(event.open_until_ms - event.at_ms) / 1000:.0f} s")
    text = "\n".join(lines)
    return _body(fmt, title, text, {"event": event.model_dump(mode="json")})


def render_test(message: str, fmt: str) -> dict[str, Any]:
    """The body of ``fusebox alerts test``'s message."""
    return _body(fmt, bounded(message, 200),
                 f"**🧪 {escape_markdown(message)}**\n- sent by `fusebox alerts test` from {socket.gethostname()}",
                 {"test": True})


def _body(fmt: str, title: str, text: str, extra: dict[str, Any]) -> dict[str, Any]:
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    return {"text": title, **extra}


Verdict = Literal["ok", "retry", "fail"]


def verdict(response: httpx.Response, fmt: str) -> tuple[Verdict, str]:
    """Whether a receiver accepted a message, from its answer.

    Parameters:
      response: the receiver's answer.
      fmt: the webhook's format (DingTalk and WeCom report failures in ``errcode``).
    Returns:
      ``ok``, ``retry`` (429, 5xx, 408, a retryable errcode) or ``fail``, and the problem.
    """
    status = response.status_code
    if status == 429 or status == 408 or status >= 500:
        return "retry", f"HTTP {status}"
    if status >= 300:
        return "fail", f"HTTP {status}"
    if fmt in RETRYABLE_ERRCODES:
        try:
            body = response.json()
        except ValueError:
            return "fail", f"HTTP {status} with a body that is not JSON"
        code = body.get("errcode") if isinstance(body, dict) else None
        if code is None:
            return "fail", f"HTTP {status} without an errcode"
        if code != 0:
            what = f"errcode {code}: {redact(str(body.get('errmsg', '')))}"
            return ("retry" if code in RETRYABLE_ERRCODES[fmt] else "fail"), what
    return "ok", f"HTTP {status}"
