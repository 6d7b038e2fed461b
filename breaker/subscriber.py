"""The thread that keeps a process's view of the shared breakers current.

It listens on the events channel (pushes arrive within a millisecond or two of a
transition), replays from the events stream what it missed while disconnected, re-reads
every breaker's state on a timer as a safety net, and, while the process runs on its local
breaker, tries to rejoin the store on the fail-safe's schedule.

A subscription can die without a sound (a proxy or a NAT that stops forwarding, a half-open
TCP connection): no message arrives and no error is raised. So the subscriber pings on the
subscription itself every ``ping_interval`` and treats an answer missing for
``ping_timeout`` as a dead connection: it says so (``subscribed`` false in health, the
cache no longer trusted for admissions) and reconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from breaker.backends.redis import parse_event, parse_stream_entry
from breaker.errors import STORE_ERRORS

if TYPE_CHECKING:
    from breaker.registry import Breakers

log = logging.getLogger(__name__)

PING_PAYLOAD = "fusebox-alive"


class DeadSubscription(ConnectionError):
    """The subscription stopped answering its pings."""


def stream_position(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Subscriber:
    """Runs the pub/sub loop of one :class:`~breaker.registry.Breakers`.

    Parameters:
      owner: the registry whose cache, listeners and fail-safe it feeds.
      poll: seconds one wait for a message may block; bounds how late the thread notices a
        stop request, a due re-read or a due ping.
      ping_interval: seconds between pings on the subscription.
      ping_timeout: seconds a ping may stay unanswered before the subscription is declared
        dead (detection within ``ping_interval + ping_timeout``, 2 s by default).
      catch_up_page: events read from the stream per round trip when catching up (each
        round trip stays well inside the store timeout).
      catch_up_limit: most events replayed after one disconnection; past it the full
        re-read that follows every (re)subscription restores the states anyway.
    """

    def __init__(
        self,
        owner: Breakers,
        poll: float = 0.05,
        ping_interval: float = 0.5,
        ping_timeout: float = 1.5,
        catch_up_page: int = 200,
        catch_up_limit: int = 10_000,
    ) -> None:
        self.owner = owner
        self.poll = poll
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.catch_up_page = catch_up_page
        self.catch_up_limit = catch_up_limit
        self._stop = threading.Event()
        self._resubscribe = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._ping_sent_at: float | None = None
        self._next_ping = 0.0
        self.last_stream_id: str | None = None
        self.connected = threading.Event()
        self.dead_subscriptions = 0

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fusebox-breaker-subscriber", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._disconnect()

    def resubscribe(self) -> None:
        """Asks the loop to subscribe afresh (after a rejoin: the old subscription may be
        alive but the process stopped trusting it; a new one replays what was missed and
        re-reads every state before the cache is trusted again)."""
        self._resubscribe.set()

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        owner = self.owner
        while not self._stop.is_set():
            if owner.degraded and not owner.failsafe.try_rejoin():
                self._stop.wait(min(owner.settings.reconnect_interval, 0.1))
                continue
            try:
                if self._resubscribe.is_set():
                    self._resubscribe.clear()
                    self._disconnect()
                if self._pubsub is None:
                    self._connect()
                message = self._pubsub.get_message(timeout=self.poll)
                if message is not None:
                    self._handle(message)
                self._keep_alive()
                owner.sync.refresh_if_due()
            except DeadSubscription as exc:
                self.dead_subscriptions += 1
                log.warning("breaker subscription dead (%s); reconnecting", exc)
                self._disconnect()
                owner.failsafe.connection_lost(exc)
            except STORE_ERRORS as exc:
                self._disconnect()
                owner.failsafe.connection_lost(exc)
                self._stop.wait(min(owner.settings.reconnect_interval, 0.2))
            except Exception:  # noqa: BLE001 - the thread must outlive a bug in one message
                log.exception("breaker subscriber loop failed; reconnecting")
                self._disconnect()
                self._stop.wait(owner.settings.reconnect_interval)

    def _connect(self) -> None:
        backend = self.owner.shared
        # A subscription must not be cut by the short command timeout: waiting for a message
        # is the point. get_message(timeout) bounds each wait instead.
        self._pubsub = backend.client.pubsub()
        self._pubsub.subscribe(backend.keys.events)
        self._ping_sent_at = None
        self._next_ping = time.monotonic() + self.ping_interval
        self.owner.failsafe.check_eviction()

    def _disconnect(self) -> None:
        cache = self.owner.cache
        cache.subscribed = False
        self.connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        self._ping_sent_at = None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    def _keep_alive(self) -> None:
        now = time.monotonic()
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.ping_timeout:
                raise DeadSubscription(f"no answer to a ping for {now - self._ping_sent_at:.1f}s")
            return
        if now >= self._next_ping:
            self._ping_sent_at = now
            self._pubsub.ping(PING_PAYLOAD)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        cache = self.owner.cache
        if kind == "pong":
            self._ping_sent_at = None
            self._next_ping = time.monotonic() + self.ping_interval
            cache.mark_alive()
        elif kind == "subscribe":
            self._catch_up()
            self.owner.sync.refresh()
            cache.subscribed = True
            self.connected.set()
        elif kind == "message":
            cache.mark_alive()
            event = parse_event(message["data"])
            if event is not None and self._is_new(event.stream_id):
                self.owner.sync.deliver(event)

    def _is_new(self, stream_id: str | None) -> bool:
        if stream_id is None:
            return True
        if self.last_stream_id is not None and stream_position(stream_id) <= stream_position(self.last_stream_id):
            return False  # already replayed from the stream
        self.last_stream_id = stream_id
        return True

    def _catch_up(self) -> None:
        """Replays the events published while this process was not listening, a page per
        round trip."""
        backend = self.owner.shared
        client, stream = backend.client, backend.keys.events
        latest = client.xrevrange(stream, count=1)
        latest_id = latest[0][0].decode() if latest else "0-0"
        if self.last_stream_id is None or stream_position(self.last_stream_id) > stream_position(latest_id):
            # First subscription, or a store that does not hold what we read last (restarted
            # without persistence, or a replica promoted before it had our last events):
            # positions from the old store mean nothing here. Start from its newest event;
            # the full re-read that follows restores every state.
            self.last_stream_id = latest_id
            return
        replayed = 0
        while replayed < self.catch_up_limit:
            page = client.xrange(stream, min=f"({self.last_stream_id}", max="+", count=self.catch_up_page)
            for entry_id, fields in page:
                event = parse_stream_entry(entry_id, fields)
                if event is None:
                    self.last_stream_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                elif self._is_new(event.stream_id):
                    self.owner.sync.deliver(event.model_copy(update={"replayed": True}))
            replayed += len(page)
            if len(page) < self.catch_up_page:
                return
        # Too far behind: skip to the newest; the re-read restores the states.
        self.last_stream_id = latest_id
