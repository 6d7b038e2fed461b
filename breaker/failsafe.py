"""How a process tells a sick store from a healthy one, when it tries it again, and what it
keeps of the decisions it took on its own meanwhile.

Three kinds of store failure, told apart because they heal differently:

- **unreachable**: connection refused or reset, a timeout. Nothing is known of the call.
- **refusing**: the server answers but will not run the breaker's scripts: out of memory
  under ``noeviction``, a read-only replica right after a failover, a lost script cache, a
  server still loading its data. A PING succeeds; a decision does not.
- **script error**: a breaker script failed while running. That is a bug (or a hand-edited
  key); it is logged once with the script and breaker name and announced to listeners.

In every case the process decides with its local breaker. It goes back to the shared one
only when a script that writes succeeds (``lua/probe.lua``), never on a PING, and it waits
longer each time the store fails again soon after a rejoin, so that a flapping store keeps
the process local instead of bouncing it between the two many times a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import (
    BusyLoadingError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from breaker.backend import RecordRequest
from breaker.errors import STORE_ERRORS, OutcomeUncertain, ScriptFailed
from breaker.events import BreakerEvent
from breaker.health import UNSAFE_EVICTION, StoreFault, StoreHealth
from breaker.identity import process_identity
from breaker.rejoin import RejoinSchedule
from breaker.state import Outcome, RecordResult, State
from breaker.tally import LocalTally

__all__ = ["FailSafe", "RejoinSchedule", "StoreFault", "StoreHealth", "UNSAFE_EVICTION", "classify", "is_script_bug"]

if TYPE_CHECKING:
    from breaker.backends.redis import RedisBackend
    from breaker.registry import Breakers

log = logging.getLogger(__name__)
T = TypeVar("T")

#: redis-py's classes for the replies of a server that is up but refuses the work (it
#: strips the error code from their messages, so the class is what tells).
REFUSAL_CLASSES: tuple[type[ResponseError], ...] = (
    ReadOnlyError, OutOfMemoryError, NoScriptError, BusyLoadingError, NoPermissionError, ExecAbortError,
)

#: Error codes of such replies that redis-py leaves in the message (the first word).
REFUSAL_CODES = frozenset({
    "READONLY", "OOM", "NOSCRIPT", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "MISCONF",
    "CLUSTERDOWN", "TRYAGAIN", "NOPERM", "NOAUTH", "WRONGPASS", "EXECABORT",
})


def is_script_bug(exc: ResponseError) -> bool:
    """True when a script raised on its own (a Lua runtime error), not because the server
    refused one of its commands (OOM, READONLY...)."""
    if isinstance(exc, REFUSAL_CLASSES):
        return False
    message = str(exc)
    code = message.split(" ", 1)[0].upper()
    if code in REFUSAL_CODES:
        return False
    return "user_script" in message or "Error running script" in message


def classify(exc: BaseException) -> StoreFault:
    """The kind of failure ``exc`` (one of :data:`STORE_ERRORS`) says the store has."""
    cause: BaseException = exc
    if isinstance(exc, OutcomeUncertain):
        cause = exc.cause
    if isinstance(exc, ScriptFailed) and isinstance(exc.__cause__, BaseException):
        cause = exc.__cause__
    if isinstance(cause, ResponseError):
        return StoreFault.SCRIPT_ERROR if is_script_bug(cause) else StoreFault.REFUSING
    return StoreFault.UNREACHABLE


class FailSafe:
    """Whether a process decides with the fleet's store or with its local breaker, why,
    and the way back.

    Parameters:
      owner: the registry whose store, cache, local breaker and listeners it switches.
    """

    def __init__(self, owner: Breakers) -> None:
        self.owner = owner
        self.tally = LocalTally()
        #: Per breaker, the shared (incarnation, epoch) last seen when the store was lost:
        #: the basis of what the local breaker admits (see breaker/tally.py).
        self.basis: dict[str, tuple[int, int]] = {}
        self.degraded = owner.shared is None
        self.since: float | None = None
        self.fault: StoreFault | None = None
        self.last_error: str | None = None
        self.losses = 0
        self.schedule = RejoinSchedule(owner.settings.reconnect_interval)
        self.eviction_policy: str | None = None
        self._logged: set[str] = set()
        self._lock = threading.RLock()

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by one of its threads."""
        self._lock = threading.RLock()
        self.tally.reset_lock()

    def forget_tally(self) -> None:
        """After a fork: the tally is the parent's to hand back, not the child's."""
        self.tally = LocalTally()

    def log_once(self, level: int, message: str, *args: object) -> None:
        text = message % args
        if text in self._logged:
            log.debug(text)
            return
        self._logged.add(text)
        log.log(level, text)

    def call(self, shared_call: Callable[[RedisBackend], T], local_call: Callable[[], T]) -> T:
        """The shared decision while the store is usable, else (and when it fails now)
        the local one."""
        shared = self.owner.shared
        if not self.degraded and shared is not None:
            try:
                return shared_call(shared)
            except STORE_ERRORS as exc:
                self.lost(exc)
        return local_call()

    def lost(self, exc: BaseException) -> None:
        """The store failed: from now on this process decides locally, starting from the
        states it last saw."""
        owner = self.owner
        fault = classify(exc)
        with self._lock:
            if self.degraded:
                return
            # Seed the local breaker before switching to it: a caller that sees the switch
            # must find every breaker as it was last seen (an OPEN one OPEN), never a fresh
            # CLOSED one. (Seeding reads only this process's cache, never the store.)
            who = process_identity()
            store_now = owner.cache.store_now_ms()
            for name in owner.breaker_names():
                view = owner.cache.get(name)
                if view is None:
                    continue
                self.basis[name] = (view.incarnation, view.epoch)
                policy = owner.sync.known_policy(name)
                # Unknown store clock: keep the whole wait rather than none of it.
                open_for = policy.wait_in_open
                if store_now is not None:
                    open_for = (view.open_until_ms - store_now) / 1000
                owner.local.seed(name, policy, view.state, open_for, who)
            self.degraded = True
            self.since = time.time()
            self.fault = fault
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.losses += 1
            self.schedule.lost(time.monotonic())
            owner.cache.subscribed = False
            if fault == StoreFault.SCRIPT_ERROR:
                self.log_once(logging.ERROR, "breaker script error (a bug; deciding with the local breaker): %s", exc)
            else:
                log.warning("breaker store %s (%s); deciding with the local breaker", fault.value, exc)
        owner.listeners.dispatch(BreakerEvent(kind="store", reason=f"lost ({fault.value}): {self.last_error}",
                                              who=who, local=True))

    def connection_lost(self, exc: BaseException) -> None:
        """The subscriber's connection broke: degrade if the store itself is gone."""
        shared = self.owner.shared
        if self.degraded or shared is None:
            return
        try:
            shared.client.ping()
        except STORE_ERRORS:
            self.lost(exc)

    def try_rejoin(self) -> bool:
        """Called while degraded: back to the shared store if it runs a script that writes
        (a PING proves nothing: a full or read-only server answers it), no sooner than the
        rejoin schedule allows; then hands back what was decided locally."""
        owner = self.owner
        shared = owner.shared
        if shared is None or not self.degraded:
            return False
        now = time.monotonic()
        if not self.schedule.due(now):
            return False
        who = process_identity()
        try:
            shared.probe(who)
        except STORE_ERRORS as exc:
            self.schedule.failed(now)
            self.fault = classify(exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        names = owner.local.names()
        local_open = {
            name: view.state in (State.OPEN, State.HALF_OPEN)
            for name, view in owner.local.views(names)[1].items()
        }
        # Hand back first, still deciding locally: if the store fails again halfway, the
        # local breaker (a local OPEN above all) is kept, not forgotten for a rejoin that
        # did not happen.
        try:
            self.hand_back(local_open, while_degraded=True)
        except STORE_ERRORS as exc:
            self.schedule.failed(now)
            self.fault = classify(exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        with self._lock:
            self.degraded = False
            self.since = None
            self.fault = None
            owner.local.forget()
            owner.sync.forget_policies()
            self.schedule.rejoined(now)
        log.warning("breaker store usable again; rejoined the shared breakers")
        owner.resubscribe()
        self.hand_back()  # what was decided locally while the first hand-back ran
        owner.listeners.dispatch(BreakerEvent(kind="store", reason="regained", who=who))
        return True

    def hand_back(self, local_open: Mapping[str, bool] | None = None, *, while_degraded: bool = False) -> None:
        """Merges every local tally into the shared window (``lua/merge.lua``).

        Parameters:
          local_open: per breaker, whether the local breaker is OPEN (the trip's reason
            says so).
          while_degraded: called by a rejoin before it switches back: a store error is
            raised (the tally kept), not taken as a new loss.
        """
        owner = self.owner
        shared = owner.shared
        if shared is None:
            return
        who = process_identity()
        for key in self.tally.keys():
            if self.degraded and not while_degraded:
                return
            name, basis = key
            tally = self.tally.take(key)
            if tally is None:
                continue
            policy = owner.sync.known_policy(name)
            now_ms = int(time.time() * 1000)
            try:
                # Writes that timed out may have run after all: ask, so as to count each once
                # (those older than the store's memory of write ids are reported lost).
                lost = tally.settle(shared.applied_batches(name, [b for b in tally.uncertain
                                                                  if b not in tally.overdue(now_ms)]), now_ms)
            except STORE_ERRORS as exc:
                self.tally.restore(key, tally)
                if while_degraded:
                    raise
                self.lost(exc)
                return
            if lost:
                self.tally.lost += lost
                log.warning("%d outcome(s) of %s were sent in a write whose answer was lost longer ago than the "
                            "store remembers write ids: not handed back (they may be counted, or lost)", lost, name)
            if not tally.totals:
                continue
            window = LocalTally.window(tally, now_ms, policy.window)
            batch = os.urandom(8).hex()
            try:
                view = shared.merge(name, policy, who, window, bool((local_open or {}).get(name)),
                                    dict(tally.totals), batch, basis)
            except STORE_ERRORS as exc:
                # It may have run: keep the counts under the hand-back's id, to be asked about.
                self.tally.restore(key, tally.as_uncertain(batch, now_ms))
                if while_degraded:
                    raise
                self.lost(exc)
                return
            owner.cache.update(name, view)
            log.info("handed back %d locally decided outcome(s) of %s (%d in the window)",
                     sum(tally.totals.values()), name, window.calls)

    def record_locally(self, request: RecordRequest, batch: str | None = None) -> RecordResult | None:
        """An outcome the store did not take (or may not have: ``batch`` names the write
        that timed out). Tallied for the shared window in every case (handed back at
        rejoin, or at the next re-read when it arrives after one); judged by the local
        breaker while this process is degraded."""
        owner = self.owner
        ticket = request.ticket
        policy = owner.sync.known_policy(request.name)
        if owner.shared is not None:
            slow = request.outcome == Outcome.SLOW or (
                request.outcome != Outcome.IGNORED and request.duration >= policy.slow_call_duration
            )
            basis = self.basis.get(request.name) if ticket.local else (ticket.incarnation, ticket.epoch)
            self.tally.add(request.name, int(time.time() * 1000), request.outcome, slow, batch, basis)
        if not self.degraded:
            return None  # admitted by the local breaker before this process rejoined: tallied
        if not ticket.local:
            # Admitted by the shared breaker, ending after Redis went away: it still tells
            # the local breaker about the model, if the local one is judging calls.
            view = owner.local.views([request.name])[1].get(request.name)
            if view is None or not view.state.admits_everything:
                return None
            ticket = ticket.model_copy(update={"epoch": view.epoch, "incarnation": view.incarnation, "local": True})
        return owner.local.record(
            RecordRequest(request.name, policy, ticket, request.outcome, request.duration, request.who)
        )

    def check_eviction(self) -> None:
        """Reads the store's eviction policy (health shows it): breaker keys carry no TTL,
        so ``noeviction`` (or a ``volatile-*`` policy) is required for an OPEN breaker to
        survive memory pressure. A server that does not allow CONFIG leaves it unknown."""
        shared = self.owner.shared
        if shared is None:
            return
        try:
            reply = shared.client.config_get("maxmemory-policy")
        except STORE_ERRORS:
            return
        value = next(iter(reply.values()), None) if reply else None
        policy = value.decode() if isinstance(value, bytes) else value
        self.eviction_policy = policy
        if policy in UNSAFE_EVICTION:
            self.log_once(logging.WARNING, "Redis maxmemory-policy is %s: it may evict breaker state (an OPEN "
                          "breaker would start again CLOSED); use noeviction", policy)

    def health(self) -> StoreHealth:
        owner = self.owner
        degraded = self.degraded and owner.shared is not None
        eviction = self.eviction_policy
        return StoreHealth(
            shared=not self.degraded,
            degraded=degraded,
            degraded_since=self.since,
            fault=self.fault if degraded else None,
            last_error=self.last_error,
            rejoin_in=max(0.0, self.schedule.next_at - time.monotonic()) if degraded else None,
            losses=self.losses,
            flaps=self.schedule.flaps,
            subscribed=owner.cache.subscribed,
            subscription_silence=owner.cache.silence(),
            pending_outcomes=owner.recorder.pending,
            dropped_outcomes=owner.recorder.dropped,
            dropped_by=dict(owner.recorder.dropped_by),
            tallied_outcomes=self.tally.count(),
            lost_outcomes=self.tally.lost,
            eviction_policy=eviction,
            eviction_safe=None if eviction is None else eviction not in UNSAFE_EVICTION,
            policy_problems=dict(owner.shared.policy_problems) if owner.shared is not None else {},
        )
