"""Webhook alerts on breaker transitions: at least once, and once in the normal case.

Delivery, per transition and webhook, fleet-wide: the sending process takes a *lease* in
Redis (``<prefix>:alerted:<breaker>:<incarnation>:<epoch>:<hook id>``, ``SET NX PX``),
renews it before each attempt, and marks the key ``delivered`` only after the receiver
accepted the message (a 2xx, and for DingTalk and WeCom an ``errcode`` of 0: they answer
HTTP 200 to a bad token or a rate limit). Every sender hears every transition, so one that
finds another's lease watches it, and if the holder dies mid-send the lease runs out and a
survivor takes over. A sender that starts replays the transitions of the last
``replay`` seconds from the event stream, which covers a fleet whose only sender died.
What cannot succeed (bad token, keyword or signature mismatch) is reported, marked
``failed`` and not retried; rate limits and 5xx are retried with exponential backoff.

Each webhook has its own thread and queue, so a dead receiver delays only its own alerts.
The listener that hands events over never waits on the network, and a full queue drops
(and counts) rather than blocks. Transitions of a process-local breaker (Redis
unreachable) are that process's business and are not alerted. Webhook URLs carry their
token: logs name a webhook by its host and id, never by its URL or path.

Where it runs: ``fusebox alerts`` (a service of its own, needing no HTTP server) and, for
small setups, inside ``fusebox serve``; any number of either share the work safely.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

# Rendering lives in api.alert_format; these names are re-exported for the sender's users.
from api.alert_format import hook_id, hook_label, redact, render, render_test, signed_url, summary, verdict  # noqa: F401
from breaker import STORE_ERRORS, BreakerEvent
from breaker.keyspace import Keyspace
from workers.settings import Webhook

log = logging.getLogger(__name__)

DELIVERED, FAILED, LEASE = "delivered", "failed", "lease:"
KEEP_SECONDS = 7 * 24 * 3600


# Lua, so that reading and changing a claim is one step: a lease is taken only when the key
# is absent, renewed and finished only by its holder (a late holder must not overwrite the
# mark of the sender that took over).
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'claimed', 0}
end
return {v, redis.call('PTTL', KEYS[1])}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_FINISH = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


@dataclass
class HookResult:
    """What happened to one message to one webhook."""

    hook: str
    ok: bool
    attempts: int
    problem: str = ""
    abandoned: bool = False  # left to whoever holds or next takes the lease: not marked


@dataclass(order=True)
class _Watch:
    due: float
    seq: int
    event: BreakerEvent = field(compare=False)


class _Hook:
    """One webhook's queue, thread and watch list."""

    def __init__(self, hook: Webhook, maxsize: int) -> None:
        self.hook, self.id, self.label = hook, hook_id(hook), hook_label(hook)
        self.queue: queue.Queue[BreakerEvent | None] = queue.Queue(maxsize=maxsize)
        self.watch: list[_Watch] = []
        self.thread: threading.Thread | None = None


class AlertSender:
    """Parameters:
      webhooks: where to send.
      client: the Redis that holds the breakers (for the leases and delivery marks).
      prefix: key prefix.
      retries: attempts per webhook and transition.
      backoff: seconds before the first retry; doubled each time.
      timeout: seconds per HTTP request.
      lease: seconds a sender holds a transition before another may take it over; renewed
        before each attempt, so at least ``timeout`` + 1 (raised to that if shorter).
      owner: this sender's name in its leases (host and pid by default).
    """

    def __init__(
        self,
        webhooks: tuple[Webhook, ...] | list[Webhook],
        client: redis.Redis,
        prefix: str,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
        lease: float = 30.0,
        owner: str | None = None,
    ) -> None:
        self.webhooks = list(webhooks)
        self.client, self.prefix = client, prefix
        self.keys = Keyspace(prefix)
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        # Renewed before each attempt, so it must outlast one: a live sender never loses it.
        self.lease_ms = int(max(lease, timeout + 1.0) * 1000)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._hooks = [_Hook(h, 1000) for h in self.webhooks]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._finish = client.register_script(_FINISH)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.taken_over = 0
        self.last_problem: dict[str, str] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> AlertSender:
        self._stopping.clear()
        for h in self._hooks:
            if h.thread is None:
                h.thread = threading.Thread(target=self._run, args=(h,), name=f"fusebox-alerts-{h.id}", daemon=True)
                h.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for h in self._hooks:
            if h.thread is not None:
                try:
                    h.queue.put_nowait(None)
                except queue.Full:
                    pass
        for h in self._hooks:
            if h.thread is not None:
                h.thread.join(timeout)
                h.thread = None

    def __call__(self, event: BreakerEvent) -> None:
        """A breaker listener: hands the event to every webhook's queue without waiting."""
        if not self.wanted(event):
            return
        for h in self._hooks:
            try:
                h.queue.put_nowait(event)
            except queue.Full:
                with self._lock:
                    self.dropped += 1
                log.warning("alert queue of %s full; dropped %s", h.label, self._describe(event))

    def _render(self, event: BreakerEvent, fmt: str) -> dict[str, Any]:
        """The webhook body of one event (a subclass with other events renders its own)."""
        return render(event, fmt)

    def _describe(self, event: BreakerEvent) -> str:
        """One line naming the event, for logs."""
        return summary(event)

    @staticmethod
    def wanted(event: BreakerEvent) -> bool:
        """Transitions that change the shared state, and a METRICS_ONLY breaker that would trip."""
        changed = event.kind == "transition" and event.from_state != event.to_state
        return not event.local and (changed or event.kind == "would_trip")

    def replay(self, events: list[BreakerEvent], window: float) -> int:
        """Hands over the transitions of the last ``window`` seconds (from the event
        stream): those already delivered are skipped by their marks, the rest are sent.

        Returns:
          how many were handed over.
        """
        since_ms = (time.time() - window) * 1000
        recent = [e for e in events if self.wanted(e) and e.at_ms >= since_ms]
        for event in sorted(recent, key=lambda e: e.at_ms):
            self(event)
        return len(recent)

    # -- delivery -----------------------------------------------------------------------------------

    def _key(self, h: _Hook, event: BreakerEvent) -> str:
        # Several would-trip events share an epoch: each crossing gets its own claim.
        crossing = f".{event.at_ms}.{hashlib.sha1(event.reason.encode()).hexdigest()[:8]}" if event.kind == "would_trip" else ""
        return self.keys.alert_claim(event.breaker, f"{event.incarnation}{crossing}", event.epoch, h.id)

    def _run(self, h: _Hook) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while True:
                wait = max(0.0, h.watch[0].due - time.monotonic()) if h.watch else None
                try:
                    event = h.queue.get(timeout=wait)
                except queue.Empty:
                    event = None
                else:
                    if event is None:
                        return
                while h.watch and h.watch[0].due <= time.monotonic():
                    self._deliver(http, h, heapq.heappop(h.watch).event, takeover=True)
                if event is not None:
                    self._deliver(http, h, event)

    def _deliver(self, http: httpx.Client, h: _Hook, event: BreakerEvent, takeover: bool = False) -> None:
        key = self._key(h, event)
        mine = f"{LEASE}{self.owner}"
        try:
            raw_state, pttl = self._claim(keys=[key], args=[mine, self.lease_ms])
            state = raw_state.decode() if isinstance(raw_state, bytes) else str(raw_state)
        except STORE_ERRORS as exc:
            log.warning("alert claims unavailable (%s); sending %s to %s unclaimed", exc, self._describe(event), h.label)
            state, pttl, key = "claimed", 0, ""
        if state.startswith(LEASE):
            # Another sender has it; if it dies, its lease runs out and we take over.
            heapq.heappush(h.watch, _Watch(time.monotonic() + max(int(pttl), 1) / 1000 + 0.05, next(self._seq), event))
            return
        if state != "claimed":
            return  # delivered, or failed for good
        if takeover:
            with self._lock:
                self.taken_over += 1
            log.warning("took over the alert %s to %s after its sender's lease ran out", self._describe(event), h.label)
        result = self._send(http, h, self._render(event, h.hook.format), key, mine)
        if result.abandoned:
            log.warning("alert %s to %s left to another sender: %s", self._describe(event), h.label, result.problem)
            return
        if key:
            try:
                self._finish(keys=[key], args=[mine, DELIVERED if result.ok else FAILED, KEEP_SECONDS])
            except STORE_ERRORS:
                log.warning("could not mark the alert %s to %s %s", self._describe(event), h.label,
                            "delivered" if result.ok else "failed")
        with self._lock:
            if result.ok:
                self.sent += 1
            else:
                self.failed += 1
                self.last_problem[h.label] = result.problem
        if not result.ok:
            log.error("alert to %s given up after %d attempt(s) (%s): %s", h.label, result.attempts, result.problem,
                      self._describe(event))

    def _send(self, http: httpx.Client, h: _Hook, body: dict[str, Any], key: str = "", mine: str = "") -> HookResult:
        delay = self.backoff
        problem = ""
        for attempt in range(1, self.retries + 1):
            if key:
                try:
                    if not self._renew(keys=[key], args=[mine, self.lease_ms]):
                        return HookResult(h.label, False, attempt - 1, "lease lost to another sender", abandoned=True)
                except STORE_ERRORS:
                    pass  # keep sending: better a rare duplicate than a lost alert
            try:
                response = http.post(signed_url(h.hook), json=body)
                outcome, problem = verdict(response, h.hook.format)
            except httpx.HTTPError as exc:
                outcome, problem = "retry", redact(f"{type(exc).__name__}: {exc}")
            if outcome == "ok":
                return HookResult(h.label, True, attempt)
            if outcome == "fail":
                return HookResult(h.label, False, attempt, problem)
            if attempt < self.retries:
                log.warning("alert to %s failed (%s); retrying in %.1fs", h.label, problem, delay)
                if self._stopping.wait(delay) and key:
                    # Its lease runs out and another sender, or this one's replay, takes over.
                    return HookResult(h.label, False, attempt, f"stopped while retrying ({problem})", abandoned=True)
                delay *= 2
        return HookResult(h.label, False, self.retries, problem)

    def send_test(self, message: str = "fusebox alert test") -> list[HookResult]:
        """Sends a test message to every webhook now (not claimed: every call sends), all
        webhooks at once, with the usual retries.

        Returns:
          one result per webhook, in order.
        """
        results: list[HookResult | None] = [None] * len(self._hooks)

        def one(i: int, h: _Hook) -> None:
            with httpx.Client(timeout=self.timeout) as http:
                results[i] = self._send(http, h, render_test(message, h.hook.format))

        threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(self._hooks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r for r in results if r is not None]
