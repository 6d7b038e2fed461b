"""Webhook alerts on breaker transitions.

Exactly one alert per transition, fleet-wide: the sending process claims each transition
in Redis first (``SET NX`` on breaker, incarnation and epoch), so several ``fusebox serve``
replicas, or one that replays what it missed from the event stream, never send twice.
Sending happens on a thread of its own with retries and exponential backoff; the listener
that hands events over never waits on the network, and a full queue drops (and counts)
rather than blocks. Transitions of a process-local breaker (Redis unreachable) are that
process's business and are not alerted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import httpx
import redis

from api.settings import Webhook
from breaker import BreakerEvent, State

log = logging.getLogger(__name__)

EMOJI = {State.OPEN: "🔴", State.FORCED_OPEN: "⛔", State.HALF_OPEN: "🟡", State.CLOSED: "🟢",
         State.DISABLED: "⚪", State.METRICS_ONLY: "🔵"}


def summary(event: BreakerEvent) -> str:
    frm = event.from_state.value if event.from_state else "?"
    to = event.to_state.value if event.to_state else "?"
    return f"fusebox breaker {event.breaker}: {frm} -> {to} ({event.reason})"


def render(event: BreakerEvent, fmt: str) -> dict[str, Any]:
    """The webhook body for one transition, in the receiver's message format."""
    title = summary(event)
    w = event.window
    lines = [
        f"**{EMOJI.get(event.to_state, '') if event.to_state else ''} {event.breaker}: "
        f"{event.from_state.value if event.from_state else '?'} → {event.to_state.value if event.to_state else '?'}**",
        f"- reason: {event.reason}",
        f"- window: {w.calls} calls, {w.failures} failed, {w.slow} slow",
        f"- epoch {event.epoch}, by {event.who}",
    ]
    if event.to_state == State.OPEN:
        lines.append(f"- probes after {(event.open_until_ms - event.at_ms) / 1000:.0f} s")
    text = "\n".join(lines)
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    return {"text": title, "event": event.model_dump(mode="json")}


class AlertSender:
    """Parameters:
      webhooks: where to send.
      client: the Redis that holds the breakers (for the once-only claims).
      prefix: key prefix.
      retries: attempts per webhook and transition.
      backoff: seconds before the first retry; doubled each time.
      timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        webhooks: tuple[Webhook, ...] | list[Webhook],
        client: redis.Redis,
        prefix: str,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self.webhooks = list(webhooks)
        self.client, self.prefix = client, prefix
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self._queue: queue.Queue[BreakerEvent | None] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> AlertSender:
        if self.webhooks and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fusebox-alerts", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def __call__(self, event: BreakerEvent) -> None:
        """A breaker listener: hands the event over without waiting."""
        if not self.webhooks or event.kind != "transition" or event.local:
            return
        if event.from_state == event.to_state:
            return  # a reset of a closed breaker: nothing changed worth waking someone for
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning("alert queue full; dropped %s", summary(event))

    def _claim(self, event: BreakerEvent) -> bool:
        key = f"{self.prefix}:alerted:{event.breaker}:{event.incarnation}:{event.epoch}"
        try:
            return bool(self.client.set(key, "1", nx=True, ex=7 * 24 * 3600))
        except (redis.RedisError, OSError):
            return True  # better a rare duplicate than a lost alert

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while True:
                event = self._queue.get()
                if event is None:
                    return
                if not self._claim(event):
                    continue
                for hook in self.webhooks:
                    self._send(http, hook, event)

    def _send(self, http: httpx.Client, hook: Webhook, event: BreakerEvent) -> None:
        body = render(event, hook.format)
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                response = http.post(hook.url, json=body)
                if response.status_code < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                log.warning("alert to %s failed (%s); retrying in %.1fs", hook.url, problem, delay)
                time.sleep(delay)
                delay *= 2
        self.failed += 1
        log.error("alert to %s given up after %d attempts: %s", hook.url, self.retries, summary(event))
