"""Breaker events and the listeners that receive them.

Every transition is one :class:`TransitionEvent`. The Redis backend publishes it on a
pub/sub channel (for speed) and appends it to a capped stream (for history, and for a
process that missed a message while disconnected). In a process, listeners get the same
events whichever way they came: metrics, alerts and the workers' consumption control
subscribe here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from breaker.state import State, WindowStats

log = logging.getLogger(__name__)

EventKind = Literal["transition", "policy", "store", "would_trip"]


#: The longest reason an operator may give (``--reason``, ``?reason=``): it goes into alerts
#: and the event stream, which must stay small and readable.
MAX_REASON = 500


class BreakerEvent(BaseModel):
    """Something that happened to a breaker or to the store behind it.

    Parameters:
      kind: ``transition`` (state change), ``policy`` (policy changed), ``store`` (this
        process lost or regained the shared store; ``breaker`` is empty then) or
        ``would_trip`` (a METRICS_ONLY breaker's window crossed a threshold: it would have
        tripped; the state is unchanged, see breaker/shadow.py).
      breaker: the breaker's name.
      from_state, to_state: the transition; equal for operator resets of a CLOSED breaker
        (published), and in the answer to an operator action that changed nothing (trip an
        OPEN breaker...): that one is never published and keeps the epoch.
      reason: why, in words (``failure rate 0.55 >= 0.50 over 40 calls``).
      at_ms: store time of the event, in ms since the Unix epoch.
      epoch, incarnation: the breaker's epoch after the event, and its record's incarnation.
      who: the process that caused it (``host:pid``), or the operator's name.
      window: the window's figures at the moment of the transition.
      open_until_ms: for OPEN, store time until which it rejects.
      consecutive_trips: trips since the breaker was last CLOSED.
      stream_id: the event's id in the Redis stream, when it came from there.
      replayed: True when read back from the stream after a missed pub/sub message.
      local: True when it happened in this process's local breaker (store unreachable).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: EventKind = "transition"
    breaker: str = ""
    from_state: State | None = None
    to_state: State | None = None
    reason: str = ""
    at_ms: int = 0
    epoch: int = 0
    incarnation: int = 0
    who: str = ""
    window: WindowStats = WindowStats()
    open_until_ms: int = 0
    consecutive_trips: int = 0
    stream_id: str | None = None
    replayed: bool = False
    local: bool = False


Listener = Callable[[BreakerEvent], None]


class Listeners:
    """A thread-safe set of listeners; a listener that raises is logged and skipped, so one
    broken alert hook cannot stop the worker control from hearing about a trip."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        """Adds a listener; returns a function that removes it again."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by one of its threads."""
        self._lock = threading.Lock()

    def dispatch(self, event: BreakerEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not break the others
                log.exception("breaker listener %r failed on %s", listener, event)
