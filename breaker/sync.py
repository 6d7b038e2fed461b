"""What a process knows of the shared breakers (state, store clock, policies) and how it
keeps that current: pushed events, periodic re-reads, and a read on demand.

A process never routes or admits on a state it has not read: the first question about a
breaker is answered from the store (one round trip), and a cached view is trusted only
while the subscription is alive and the last full re-read is recent (``StateCache.fresh``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from breaker.events import BreakerEvent
from breaker.errors import STORE_ERRORS
from breaker.policy import BreakerPolicy
from breaker.state import Admission, RecordResult, State, StateView

if TYPE_CHECKING:
    from breaker.registry import Breakers

log = logging.getLogger(__name__)


class StateSync:
    """Keeps one registry's cache and policies in step with the store.

    Parameters:
      owner: the registry (its store, cache, fail-safe and listeners).
    """

    def __init__(self, owner: Breakers) -> None:
        self.owner = owner
        self.stored_policies: dict[str, BreakerPolicy | None] = {}
        self.next_refresh = 0.0
        self.refreshes = 0

    def forget_policies(self) -> None:
        """Policies are read again on next use (after a rejoin or a fork)."""
        self.stored_policies.clear()
        self.next_refresh = 0.0
        self.refreshes = 0

    # -- states ------------------------------------------------------------------------------

    def known_view(self, name: str) -> StateView | None:
        """The shared breaker's state, epoch and wait: as last pushed while the subscription
        is alive and recently re-read, else read now from the store (one round trip); a
        breaker the store has never seen is CLOSED. None while degraded (and when the read
        fails, which makes the process degraded)."""
        owner = self.owner
        shared = owner.shared
        if owner.failsafe.degraded or shared is None:
            return None
        view = owner.cache.get(name)
        if view is not None and owner.cache.fresh:
            return view
        try:
            store_now, views = shared.views([name])
        except STORE_ERRORS as exc:
            owner.failsafe.lost(exc)
            return None
        owner.cache.observe_store_time(store_now)
        view = views.get(name)
        if view is None:
            # Never seen by the store: nobody has tripped it, CLOSED is the truth. Not
            # cached: its epoch and incarnation are not the ones the store will give the
            # breaker, and tickets must carry those (the first admission creates it).
            return StateView(state=State.CLOSED, epoch=0, incarnation=0, now_ms=store_now)
        owner.cache.update(name, view)
        return owner.cache.get(name)

    def known_state(self, name: str) -> State:
        """The state to route by: the shared one (see :meth:`known_view`), else the local
        breaker's while the store is unusable. Never a state this process has not read."""
        view = self.known_view(name)
        if view is None:
            return self.owner.local.snapshot(name, self.effective_policy(name)).state
        return view.state

    def open_remaining(self, name: str) -> float | None:
        """Seconds until an OPEN breaker's wait ends, on the store's clock (0 when due);
        None when it is not OPEN as far as this process knows, or the clock is unknown."""
        view = self.known_view(name)
        if view is None:
            return self.owner.local.snapshot(name, self.effective_policy(name)).retry_after
        store_now = self.owner.cache.store_now_ms()
        if view.state != State.OPEN or store_now is None:
            return None
        return max(0.0, (view.open_until_ms - store_now) / 1000)

    def learn(self, name: str, answer: Admission | RecordResult) -> None:
        """A script's reply is a fresh reading of the breaker and of the store's clock."""
        self.owner.cache.update(name, answer)
        self.owner.cache.observe_store_time(answer.now_ms)

    # -- policies --------------------------------------------------------------------------------

    def effective_policy(self, name: str) -> BreakerPolicy:
        """The stored policy if the store holds a usable one, else the fleet default (the
        policy of the process that created the breaker), else the configured one. Read on
        first use, then kept current from policy events and periodic re-reads."""
        owner = self.owner
        if name not in self.stored_policies and not owner.failsafe.degraded and owner.shared is not None:
            self.load_policy(name)
        return self.known_policy(name)

    def known_policy(self, name: str) -> BreakerPolicy:
        """The stored policy as last read, else the configured one; never asks the store."""
        stored = self.stored_policies.get(name)
        return stored if stored is not None else self.owner.get(name).configured_policy

    def load_policy(self, name: str) -> None:
        shared = self.owner.shared
        assert shared is not None
        try:
            self.stored_policies[name] = shared.get_policy(name)
        except ValueError:
            log.exception("stored policy of %s is invalid; keeping the configured one", name)
            self.stored_policies[name] = None
        except STORE_ERRORS as exc:
            self.owner.failsafe.connection_lost(exc)  # unknown for now: asked again on next use

    # -- pushes and re-reads ---------------------------------------------------------------------

    def deliver(self, event: BreakerEvent) -> None:
        """An event from the store (pub/sub or stream replay): update, then tell listeners."""
        owner = self.owner
        if event.kind == "transition":
            owner.cache.apply_event(event)
            if not event.replayed:
                # A live event is a reading of the store's clock, a pub/sub hop late.
                owner.cache.observe_store_time(event.at_ms)
        elif event.kind == "policy" and event.breaker in owner.breaker_names():
            self.load_policy(event.breaker)
        owner.listeners.dispatch(event)

    def refresh_if_due(self) -> None:
        if time.monotonic() >= self.next_refresh:
            self.refresh()

    def refresh(self) -> None:
        """Re-reads every known breaker's state (and now and then its policy) from the store,
        and hands back any outcome decided locally that arrived after a rejoin."""
        owner = self.owner
        shared = owner.shared
        if shared is None:
            return
        self.next_refresh = time.monotonic() + owner.settings.refresh_interval
        names = sorted(set(owner.cache.names()) | set(owner.breaker_names()))
        store_now, views = shared.views(names)
        for name, view in views.items():
            owner.cache.update(name, view)
        owner.cache.observe_store_time(store_now)
        self.refreshes += 1
        if self.refreshes % 5 == 1:
            for name in owner.breaker_names():
                self.load_policy(name)
        owner.cache.mark_refreshed()
        failsafe = owner.failsafe
        if failsafe.tally.names() and not failsafe.degraded:
            failsafe.hand_back()
