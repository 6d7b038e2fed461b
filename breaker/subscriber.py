"""The thread that keeps a process's view of the shared breakers current.

It listens on the events channel (pushes arrive within a millisecond or two of a
transition), replays from the events stream what it missed while disconnected, re-reads
every breaker's state on a timer as a safety net, and, while the process runs on its local
breaker, keeps trying to reach Redis again.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from breaker.backends.redis import parse_event, parse_stream_entry

if TYPE_CHECKING:
    from breaker.registry import Breakers

log = logging.getLogger(__name__)


def stream_position(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Subscriber:
    """Runs the pub/sub loop of one :class:`~breaker.registry.Breakers`.

    Parameters:
      owner: the registry whose cache, listeners and fail-safe it feeds.
      poll: seconds one wait for a message may block; bounds how late the thread notices a
        stop request or a due re-read.
    """

    def __init__(self, owner: Breakers, poll: float = 0.05) -> None:
        self.owner = owner
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self.last_stream_id: str | None = None
        self.connected = threading.Event()

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

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        owner = self.owner
        while not self._stop.is_set():
            if owner.degraded and not owner.try_rejoin():
                self._stop.wait(owner.settings.reconnect_interval)
                continue
            try:
                if self._pubsub is None:
                    self._connect()
                message = self._pubsub.get_message(timeout=self.poll)
                if message is not None:
                    self._handle(message)
                owner.refresh_if_due()
            except (RedisError, OSError) as exc:
                self._disconnect()
                owner.connection_lost(exc)
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
        self._pubsub.subscribe(backend.keys.channel)

    def _disconnect(self) -> None:
        cache = self.owner.cache
        cache.subscribed = False
        self.connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._catch_up()
            self.owner.refresh()
            self.owner.cache.subscribed = True
            self.connected.set()
        elif kind == "message":
            event = parse_event(message["data"])
            if event is not None and self._is_new(event.stream_id):
                self.owner.deliver(event)

    def _is_new(self, stream_id: str | None) -> bool:
        if stream_id is None:
            return True
        if self.last_stream_id is not None and stream_position(stream_id) <= stream_position(self.last_stream_id):
            return False  # already replayed from the stream
        self.last_stream_id = stream_id
        return True

    def _catch_up(self) -> None:
        """Replays the events published while this process was not listening."""
        backend = self.owner.shared
        client, stream = backend.client, backend.keys.stream
        if self.last_stream_id is None:
            latest = client.xrevrange(stream, count=1)
            self.last_stream_id = latest[0][0].decode() if latest else "0-0"
            return
        missed = client.xrange(stream, min=f"({self.last_stream_id}", max="+", count=10_000)
        for entry_id, fields in missed:
            event = parse_stream_entry(entry_id, fields)
            if event is not None and self._is_new(event.stream_id):
                self.owner.deliver(event.model_copy(update={"replayed": True}))
