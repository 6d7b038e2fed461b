"""Alerts per device ejection and return, on the breaker alerts' path (api/alerts.py): the
same webhooks, formats, retries, and the same fleet-wide claim per alert and webhook, so
each is delivered at least once, once in the normal case, and taken over if its sender
dies.

The device store appends every ejection and return to ``<prefix>:device-events``
(workers/devices/store.py); :class:`DeviceEventFeed` follows that stream (and, when it
starts, re-checks the last ``replay`` seconds of it) and hands each entry to a
:class:`DeviceAlertSender`. An alert's claim is ``alert_claim("device-<model>", <entry id>,
0, <hook>)``: one per event, whoever reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from pydantic import BaseModel

from api.alert_format import _body, bounded, escape_markdown
from api.alerts import AlertSender, _Hook
from breaker import STORE_ERRORS
from breaker.keyspace import Keyspace

log = logging.getLogger(__name__)


class DeviceEvent(BaseModel):
    """One ejection or return, as the stream holds it."""

    id: str
    action: str
    model: str
    device: str
    reason: str = ""
    at: float = 0.0
    until: float | None = None
    ejections: int | None = None

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeviceEvent:
        raw = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id, **raw)

    @property
    def title(self) -> str:
        return f"fusebox device {self.device}: {self.action} from {self.model} ({bounded(self.reason, 200)})"


def render_device(event: DeviceEvent, fmt: str) -> dict[str, Any]:
    """The webhook body for one device event, in the receiver's format."""
    mark = "🔴" if event.action == "ejected" else "🟢"
    lines = [f"**{mark} {escape_markdown(event.device, 200)}: {event.action} from {event.model}**",
             f"- reason: {escape_markdown(event.reason)}"]
    if event.action == "ejected" and event.until:
        lines.append(f"- ejection {event.ejections}, probe job after {max(0.0, event.until - event.at):.0f} s")
    return _body(fmt, event.title, "\n".join(lines), {"device_event": event.model_dump(mode="json")})


class DeviceAlertSender(AlertSender):
    """An :class:`~api.alerts.AlertSender` whose events are device events (same parameters)."""

    @staticmethod
    def wanted(event: Any) -> bool:
        return True  # every ejection and return

    def _key(self, h: _Hook, event: Any) -> str:
        return self.keys.alert_claim(f"device-{event.model}", event.id, 0, h.id)

    def _render(self, event: Any, fmt: str) -> dict[str, Any]:
        return render_device(event, fmt)

    def _describe(self, event: Any) -> str:
        return event.title


class DeviceEventFeed:
    """Follows the device events stream and hands each event to ``sender``.

    Parameters:
      sender: where the events go.
      client: the Redis holding the stream.
      prefix: key prefix.
      replay: seconds of past events re-checked at start (delivered ones are skipped by
        their marks).
    """

    def __init__(self, sender: DeviceAlertSender, client: redis.Redis, prefix: str, replay: float = 900.0) -> None:
        self.sender, self.client, self.replay = sender, client, replay
        self.key = Keyspace(prefix).device_events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DeviceEventFeed:
        self.sender.start()
        self._thread = threading.Thread(target=self._run, name="fusebox-device-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.sender.stop()

    def _run(self) -> None:
        last = f"{int((time.time() - self.replay) * 1000)}-0"
        while not self._stop.is_set():
            try:
                got = self.client.xread({self.key: last}, count=100, block=500)
            except STORE_ERRORS:
                self._stop.wait(1.0)
                continue
            for _, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    try:
                        self.sender(DeviceEvent.from_entry(entry_id, fields))
                    except ValueError:
                        log.warning("unreadable device event %s", last)
