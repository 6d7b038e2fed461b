"""What this process knows of the shared breakers' states, kept current by pushes.

Admission in CLOSED is decided here, without a round trip to Redis: the subscriber keeps
each breaker's state up to date from pub/sub events and periodic re-reads. Times the store
hands out (``open_until``) are compared with an estimate of the store's clock made from this
process's monotonic clock plus a measured offset, so a host whose wall clock is hours off
still decides like every other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from breaker.events import BreakerEvent
from breaker.state import StateView


class StateCache:
    """The last known :class:`StateView` of each breaker.

    Parameters:
      clock: local monotonic seconds (tests pass the manual clock they give the backend).
      max_age: seconds after the last full re-read past which the cache is not trusted to
        admit or route on its own (the subscriber may be stuck, or the whole process was
        paused).
      max_silence: seconds without any sign of life from the subscription (a message or
        the answer to its ping) past which it is not trusted either: a connection that
        died silently delivers nothing and raises nothing.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_age: float = 3.0, max_silence: float = 2.0
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, StateView] = {}
        self._offset_ms: float | None = None  # store clock minus local clock
        self.max_age = max_age
        self.max_silence = max_silence
        self.subscribed = False
        self._refreshed_at: float | None = None
        self._alive_at: float | None = None

    # -- the store's clock ------------------------------------------------------------------

    def observe_store_time(self, store_now_ms: int) -> None:
        """Measures the offset between the store's clock and ours from a fresh reply."""
        self._offset_ms = store_now_ms - self._clock() * 1000

    def store_now_ms(self) -> float | None:
        """Our estimate of the store's clock, or None before the first reply."""
        if self._offset_ms is None:
            return None
        return self._clock() * 1000 + self._offset_ms

    # -- views --------------------------------------------------------------------------------

    def get(self, name: str) -> StateView | None:
        return self._views.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._views)

    def update(self, name: str, view: StateView, *, authoritative: bool = True) -> bool:
        """Takes a newer view; returns whether it replaced the known one.

        Newer means *read later from the store*, not a higher epoch: a store that came back
        behind (restarted from an older snapshot or AOF, a lagging replica promoted) has the
        same incarnation and a lower epoch, and it is the truth from then on. Every view
        carries the store's clock when it was read (``now_ms``; a pushed transition its
        ``at_ms``), so a view read after the known one replaces it whatever its epoch, and
        a reply that raced a newer push (read earlier) is dropped. At the same instant the
        higher epoch wins. A view that is not ``authoritative`` (a push) of an older
        incarnation never wins: a delayed event of a store that was emptied since.
        """
        with self._lock:
            known = self._views.get(name)
            if known is not None:
                if view.now_ms < known.now_ms:
                    return False
                if view.now_ms == known.now_ms and (view.incarnation, view.epoch) < (known.incarnation, known.epoch):
                    return False
                if not authoritative and view.incarnation < known.incarnation:
                    return False
            self._views[name] = view
            return True

    def apply_event(self, event: BreakerEvent) -> bool:
        if event.kind != "transition" or event.to_state is None:
            return False
        view = StateView(
            state=event.to_state,
            epoch=event.epoch,
            incarnation=event.incarnation,
            open_until_ms=event.open_until_ms,
            now_ms=event.at_ms,
        )
        return self.update(event.breaker, view, authoritative=False)

    # -- trust ----------------------------------------------------------------------------------

    def mark_refreshed(self) -> None:
        self._refreshed_at = self._alive_at = self._clock()

    def mark_alive(self) -> None:
        """The subscription showed a sign of life (a message, the answer to a ping)."""
        self._alive_at = self._clock()

    def silence(self) -> float | None:
        """Seconds since the subscription's last sign of life; None before the first."""
        return None if self._alive_at is None else self._clock() - self._alive_at

    @property
    def fresh(self) -> bool:
        """Whether pushes are flowing (the subscription answered recently) and a full
        re-read happened recently: only then may a CLOSED breaker admit, or a producer
        route, without asking the store."""
        if not self.subscribed or self._refreshed_at is None or self._alive_at is None:
            return False
        now = self._clock()
        return now - self._refreshed_at < self.max_age and now - self._alive_at < self.max_silence

    def distrust(self) -> None:
        """Keeps the views but trusts none of them until the next full re-read."""
        self.subscribed = False
        self._refreshed_at = None
        self._alive_at = None

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by one of its threads."""
        self._lock = threading.Lock()
