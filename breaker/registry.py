"""The entry point: every breaker of a process, the store behind them, and the fail-safe.

>>> breakers = Breakers.from_env(policies={"ocr": BreakerPolicy.for_tier("core")})
>>> with breakers.guard("ocr"):
...     run_model()

While Redis answers, decisions are the fleet's: CLOSED admits from the pushed state (no
round trip), outcomes are written behind in batches, OPEN-to-HALF_OPEN and probe permits
are decided by one atomic script call. When a call to Redis fails, takes longer than
``redis_timeout``, or is refused (out of memory, a read-only replica, a script error), the
process switches to a local in-memory breaker seeded with the last state it saw, says so
(:attr:`Breakers.degraded`, :meth:`Breakers.health`, a ``store`` event), never lets a Redis
error reach the guarded call, and keeps a tally of every outcome it decides on its own.
It rejoins only when a breaker script that writes succeeds again, with growing waits for a
store that keeps failing (``breaker/failsafe.py``), and hands its tally back to the shared
window (``lua/merge.lua``): nothing it learned while alone is lost.

A process never routes or admits on a state it has not read: the first use of a breaker
reads it from the store (one round trip), and a view is trusted only while the
subscription is alive and the last full re-read is recent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from pydantic import BaseModel

from breaker.backend import RecordRequest
from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import KeySpace, RedisBackend
from breaker.cache import StateCache
from breaker.circuit import CircuitBreaker
from breaker.errors import BreakerError, CallNotPermitted, ExceptionClassifier
from breaker.events import BreakerEvent, Listener, Listeners
from breaker.failsafe import STORE_ERRORS, LocalTally, OutcomeUncertain, RejoinSchedule, StoreFault, classify
from breaker.policy import BreakerPolicy
from breaker.recorder import Recorder
from breaker.settings import BreakerSettings, redis_client
from breaker.state import (
    Admission,
    BreakerSnapshot,
    Control,
    Outcome,
    RecordResult,
    State,
    StateView,
    Ticket,
    check_name,
)
from breaker.subscriber import Subscriber

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["STORE_ERRORS", "Breakers", "StoreHealth", "StoreUnavailable", "process_identity"]

#: Eviction policies that may drop a breaker's keys (which carry no TTL): an OPEN breaker
#: evicted under memory pressure would silently start again CLOSED.
UNSAFE_EVICTION = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


class StoreUnavailable(BreakerError):
    """An operator action needs the shared store and it did not answer."""


class StoreHealth(BaseModel):
    """What health checks and metrics report about the breaker store.

    Parameters:
      shared: True when decisions are the fleet's (Redis answers and runs the scripts).
      degraded: True when this process decides with its local breaker.
      degraded_since: wall-clock seconds when it lost the store, if degraded.
      fault: why it is degraded: ``unreachable``, ``refusing`` (answers but refuses the
        scripts: OOM, READONLY...) or ``script_error``.
      last_error: the error that made it degraded (or the last failed rejoin).
      rejoin_in: seconds until the next attempt to rejoin, while degraded.
      losses: times this process lost the store; flaps: of those, losses soon after a
        rejoin (each makes the next wait longer).
      subscribed: whether pushes from the store are flowing.
      subscription_silence: seconds since the subscription last showed a sign of life
        (a message or the answer to its ping); a silently dead one is noticed within 2 s.
      pending_outcomes: outcomes waiting to be written.
      dropped_outcomes: outcomes dropped because the queue was full.
      tallied_outcomes: outcomes decided locally and not yet handed back to the store.
      eviction_policy: the store's ``maxmemory-policy`` (None when CONFIG is not allowed).
      eviction_safe: False when that policy may evict breaker keys (``allkeys-*``).
      policy_problems: breakers whose stored policy the scripts refused, with why.
    """

    shared: bool
    degraded: bool
    degraded_since: float | None = None
    fault: StoreFault | None = None
    last_error: str | None = None
    rejoin_in: float | None = None
    losses: int = 0
    flaps: int = 0
    subscribed: bool
    subscription_silence: float | None = None
    pending_outcomes: int
    dropped_outcomes: int
    tallied_outcomes: int = 0
    eviction_policy: str | None = None
    eviction_safe: bool | None = None
    policy_problems: dict[str, str] = {}


_HOST = socket.gethostname()


def process_identity() -> str:
    return f"{_HOST}:{os.getpid()}"


_REGISTRIES: weakref.WeakSet[Breakers] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_REGISTRIES):
        registry._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Breakers:
    """Every breaker of this process.

    Parameters:
      shared: the fleet's store; None runs on the local breaker only (unit tests, or a
        single process that needs no sharing).
      settings: timeouts and intervals (``BreakerSettings.from_env()`` by default).
      policies: configured policies by breaker name.
      default_policy: for breakers not named in ``policies``.
      classifier: how exceptions from guarded calls count.
      clock: local monotonic seconds; tests pass the manual clock they give the backend.
      subscribe: run the subscriber thread (pushed state, catch-up, re-reads, rejoin).
        Without it every admission asks the store.
    """

    def __init__(
        self,
        shared: RedisBackend | None = None,
        *,
        settings: BreakerSettings | None = None,
        policies: Mapping[str, BreakerPolicy] | None = None,
        default_policy: BreakerPolicy | None = None,
        classifier: ExceptionClassifier | None = None,
        clock: Callable[[], float] | None = None,
        subscribe: bool = True,
    ) -> None:
        self.shared = shared
        self.settings = settings or BreakerSettings()
        self.policies = dict(policies or {})
        self.default_policy = default_policy or BreakerPolicy()
        self.classifier = classifier or ExceptionClassifier()
        self.listeners = Listeners()
        self.cache = StateCache(clock or time.monotonic, max_age=1.5 * self.settings.refresh_interval)
        self.local = InMemoryBackend(clock=clock, on_event=self.listeners.dispatch)
        self.tally = LocalTally()
        self._subscribe = subscribe and shared is not None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stored_policies: dict[str, BreakerPolicy | None] = {}
        self._lock = threading.RLock()
        self._degraded = shared is None
        self._degraded_since: float | None = None
        self._fault: StoreFault | None = None
        self._last_error: str | None = None
        self._losses = 0
        self._logged_errors: set[str] = set()
        self._schedule = RejoinSchedule(self.settings.reconnect_interval)
        self._eviction_policy: str | None = None
        self._next_refresh = 0.0
        self._refreshes = 0
        self._pid = -1
        self._recorder: Recorder
        self._subscriber: Subscriber
        self._closed = False
        self._start_threads()
        _REGISTRIES.add(self)

    @classmethod
    def from_env(cls, settings: BreakerSettings | None = None, **kwargs: object) -> Breakers:
        """Breakers on the Redis named by ``FUSEBOX_REDIS_URL`` (see :class:`BreakerSettings`)."""
        settings = settings or BreakerSettings.from_env()
        return cls.from_url(settings.redis_url, settings=settings, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_url(cls, url: str, settings: BreakerSettings | None = None, **kwargs: object) -> Breakers:
        settings = (settings or BreakerSettings.from_env()).model_copy(update={"redis_url": url})
        client = redis_client(url, settings.redis_timeout)
        backend = RedisBackend(client, KeySpace(settings.key_prefix), stream_maxlen=settings.stream_maxlen)
        return cls(backend, settings=settings, **kwargs)  # type: ignore[arg-type]

    # -- threads, fork safety, shutdown --------------------------------------------------------

    def _start_threads(self) -> None:
        """(Re)creates the threads; after a fork the child gets its own (Celery's prefork
        pool forks workers from a parent that may have used these breakers)."""
        self._pid = os.getpid()
        self._recorder = Recorder(self._send_outcomes, linger=self.settings.record_linger)
        self._subscriber = Subscriber(self)
        self.cache.forget()
        # What a parent knew of stored policies may be stale by the time a child runs.
        self._stored_policies.clear()
        self._refreshes = 0
        if self._closed:
            return
        self._recorder.start()
        if self._subscribe:
            self._subscriber.start()

    def _after_fork(self) -> None:
        """Runs in a forked child before anything else: every lock the parent's threads may
        have held at the fork is replaced (they are gone in the child and would never
        release it); the threads themselves are restarted on first use."""
        self._lock = threading.RLock()
        self.cache.reset_lock()
        self.local.reset_lock()
        self.listeners.reset_lock()
        self.tally.reset_lock()

    def _ensure_threads(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._start_threads()

    def wait_until_subscribed(self, timeout: float = 5.0) -> bool:
        """Blocks until pushes from the store flow (tests and start-up use it)."""
        self._ensure_threads()
        return self._subscriber.connected.wait(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every queued outcome has been written."""
        return self._recorder.flush(timeout)

    def close(self) -> None:
        """Writes what is queued and stops the threads."""
        self._closed = True
        if self._pid == os.getpid():
            self._recorder.stop()
            self._subscriber.stop()

    def __enter__(self) -> Breakers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- breakers and listeners ------------------------------------------------------------------

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called ``name``, created on first use."""
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    policy = self.policies.get(name, self.default_policy)
                    breaker = CircuitBreaker(check_name(name), self, policy, self.classifier)
                    self._breakers[name] = breaker
        return breaker

    def guard(self, name: str) -> AbstractContextManager[Ticket]:
        """``with breakers.guard("ocr"): ...`` runs the body as one guarded call."""
        return self.get(name).guard()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Calls ``listener`` with every event (transitions of any breaker, policy changes,
        store lost/regained); returns a function that removes it."""
        self._ensure_threads()
        return self.listeners.add(listener)

    def names(self) -> list[str]:
        """Every breaker the store knows, and those this process created."""
        known = set(self._breakers)
        if not self._degraded and self.shared is not None:
            try:
                known.update(self.shared.names())
            except STORE_ERRORS as exc:
                self._enter_degraded(exc)
        return sorted(known)

    # -- the fail-safe --------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while this process decides with its local breaker."""
        return self._degraded

    def health(self) -> StoreHealth:
        degraded = self._degraded and self.shared is not None
        eviction = self._eviction_policy
        return StoreHealth(
            shared=not self._degraded,
            degraded=degraded,
            degraded_since=self._degraded_since,
            fault=self._fault if degraded else None,
            last_error=self._last_error,
            rejoin_in=max(0.0, self._schedule.next_at - time.monotonic()) if degraded else None,
            losses=self._losses,
            flaps=self._schedule.flaps,
            subscribed=self.cache.subscribed,
            subscription_silence=self.cache.silence(),
            pending_outcomes=self._recorder.pending,
            dropped_outcomes=self._recorder.dropped,
            tallied_outcomes=self.tally.count(),
            eviction_policy=eviction,
            eviction_safe=None if eviction is None else eviction not in UNSAFE_EVICTION,
            policy_problems=dict(self.shared.policy_problems) if self.shared is not None else {},
        )

    def _fail_safe(self, shared_call: Callable[[RedisBackend], T], local_call: Callable[[], T]) -> T:
        if not self._degraded and self.shared is not None:
            try:
                return shared_call(self.shared)
            except STORE_ERRORS as exc:
                self._enter_degraded(exc)
        return local_call()

    def _log_once(self, level: int, message: str, *args: object) -> None:
        text = message % args
        if text in self._logged_errors:
            log.debug(text)
            return
        self._logged_errors.add(text)
        log.log(level, text)

    def _enter_degraded(self, exc: BaseException) -> None:
        fault = classify(exc)
        with self._lock:
            if self._degraded:
                return
            # First of all: nothing below may reach for the store again.
            self._degraded = True
            self._degraded_since = time.time()
            self._fault = fault
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._losses += 1
            self._schedule.lost(time.monotonic())
            self.cache.subscribed = False
            if fault == StoreFault.SCRIPT_ERROR:
                self._log_once(logging.ERROR, "breaker script error (a bug; deciding with the local breaker): %s", exc)
            else:
                log.warning("breaker store %s (%s); deciding with the local breaker", fault.value, exc)
            who = process_identity()
            store_now = self.cache.store_now_ms()
            for name in list(self._breakers):
                view = self.cache.get(name)
                if view is None:
                    continue
                policy = self._known_policy(name)
                # Unknown store clock: keep the whole wait rather than none of it.
                open_for = policy.wait_in_open
                if store_now is not None:
                    open_for = (view.open_until_ms - store_now) / 1000
                self.local.seed(name, policy, view.state, open_for, who)
        self.listeners.dispatch(BreakerEvent(kind="store", reason=f"lost ({fault.value}): {self._last_error}",
                                             who=who, local=True))

    def connection_lost(self, exc: BaseException) -> None:
        """The subscriber's connection broke: degrade if the store itself is gone."""
        if self._degraded or self.shared is None:
            return
        try:
            self.shared.client.ping()
        except STORE_ERRORS:
            self._enter_degraded(exc)

    def try_rejoin(self) -> bool:
        """Called while degraded: back to the shared store if it runs a script that writes
        (a PING proves nothing: a full or read-only server answers it), no sooner than the
        rejoin schedule allows; then hands back what was decided locally."""
        if self.shared is None or not self._degraded:
            return False
        now = time.monotonic()
        if not self._schedule.due(now):
            return False
        who = process_identity()
        try:
            self.shared.probe(who)
        except STORE_ERRORS as exc:
            self._schedule.failed(now)
            self._fault = classify(exc)
            self._last_error = f"{type(exc).__name__}: {exc}"
            return False
        with self._lock:
            names = self.local.names()
            local_open = {
                name: view.state in (State.OPEN, State.HALF_OPEN)
                for name, view in self.local.views(names)[1].items()
            }
            self._degraded = False
            self._degraded_since = None
            self._fault = None
            self.local.forget()
            self._stored_policies.clear()
            self._next_refresh = 0.0
            self._schedule.rejoined(now)
        log.warning("breaker store usable again; rejoined the shared breakers")
        self._subscriber.resubscribe()
        self._hand_back(local_open)
        self.listeners.dispatch(BreakerEvent(kind="store", reason="regained", who=who))
        return True

    def _hand_back(self, local_open: Mapping[str, bool] | None = None) -> None:
        """Merges every local tally into the shared window (``lua/merge.lua``)."""
        if self.shared is None:
            return
        who = process_identity()
        for name in self.tally.names():
            if self._degraded:
                return
            tally = self.tally.take(name)
            if tally is None:
                continue
            policy = self._known_policy(name)
            now_ms = int(time.time() * 1000)
            try:
                # Writes that timed out may have run after all: ask, so as to count each once.
                tally.settle(self.shared.applied_batches(name, list(tally.uncertain)))
                if not tally.totals:
                    continue
                window = LocalTally.window(tally, now_ms, policy.window)
                view = self.shared.merge(name, policy, who, window, bool((local_open or {}).get(name)),
                                         dict(tally.totals))
            except STORE_ERRORS as exc:
                self.tally.restore(name, tally)
                self._enter_degraded(exc)
                return
            self.cache.update(name, view)
            log.info("handed back %d locally decided outcome(s) of %s (%d in the window)",
                     sum(tally.totals.values()), name, window.calls)

    def check_eviction(self) -> None:
        """Reads the store's eviction policy (health shows it): breaker keys carry no TTL,
        so ``noeviction`` (or a ``volatile-*`` policy) is required for an OPEN breaker to
        survive memory pressure. A server that does not allow CONFIG leaves it unknown."""
        if self.shared is None:
            return
        try:
            reply = self.shared.client.config_get("maxmemory-policy")
        except STORE_ERRORS:
            return
        value = next(iter(reply.values()), None) if reply else None
        policy = value.decode() if isinstance(value, bytes) else value
        self._eviction_policy = policy
        if policy in UNSAFE_EVICTION:
            self._log_once(logging.WARNING, "Redis maxmemory-policy is %s: it may evict breaker state (an OPEN "
                           "breaker would start again CLOSED); use noeviction", policy)

    # -- pushed state -----------------------------------------------------------------------------

    def known_view(self, name: str) -> StateView | None:
        """The shared breaker's state, epoch and wait: as last pushed while the subscription
        is alive and recently re-read, else read now from the store (one round trip); a
        breaker the store has never seen is CLOSED. None while degraded (and when the read
        fails, which makes the process degraded)."""
        self._ensure_threads()
        if self._degraded or self.shared is None:
            return None
        view = self.cache.get(name)
        if view is not None and self.cache.fresh:
            return view
        try:
            store_now, views = self.shared.views([name])
        except STORE_ERRORS as exc:
            self._enter_degraded(exc)
            return None
        self.cache.observe_store_time(store_now)
        # Never seen by the store: nobody has tripped it, CLOSED is the truth.
        self.cache.update(name, views.get(name) or StateView(state=State.CLOSED, epoch=0, incarnation=0,
                                                              now_ms=store_now))
        return self.cache.get(name)

    def known_state(self, name: str) -> State:
        """The state to route by: the shared one (see :meth:`known_view`), else the local
        breaker's while the store is unusable. Never a state this process has not read."""
        view = self.known_view(name)
        if view is None:
            return self.local.snapshot(name, self.effective_policy(name)).state
        return view.state

    def open_remaining(self, name: str) -> float | None:
        """Seconds until an OPEN breaker's wait ends, on the store's clock (0 when due);
        None when it is not OPEN as far as this process knows, or the clock is unknown."""
        view = self.known_view(name)
        if view is None:
            snap = self.local.snapshot(name, self.effective_policy(name))
            return snap.retry_after
        store_now = self.cache.store_now_ms()
        if view.state != State.OPEN or store_now is None:
            return None
        return max(0.0, (view.open_until_ms - store_now) / 1000)

    def effective_policy(self, name: str) -> BreakerPolicy:
        """The stored policy if the store holds a usable one, else the fleet default (the
        policy of the process that created the breaker), else the configured one. A process
        reads it on first use, then keeps it current from policy events and periodic
        re-reads."""
        self._ensure_threads()  # a forked child first forgets what its parent knew
        if name not in self._stored_policies and not self._degraded and self.shared is not None:
            self._load_policy(name)
        return self._known_policy(name)

    def _known_policy(self, name: str) -> BreakerPolicy:
        """The stored policy as last read, else the configured one; never asks the store."""
        stored = self._stored_policies.get(name)
        return stored if stored is not None else self.get(name).configured_policy

    def deliver(self, event: BreakerEvent) -> None:
        """An event from the store (pub/sub or stream replay): update, then tell listeners."""
        if event.kind == "transition":
            self.cache.apply_event(event)
            if not event.replayed:
                # A live event is a reading of the store's clock, a pub/sub hop late.
                self.cache.observe_store_time(event.at_ms)
        elif event.kind == "policy" and event.breaker in self._breakers:
            self._load_policy(event.breaker)
        self.listeners.dispatch(event)

    def _load_policy(self, name: str) -> None:
        assert self.shared is not None
        try:
            self._stored_policies[name] = self.shared.get_policy(name)
        except ValueError:
            log.exception("stored policy of %s is invalid; keeping the configured one", name)
            self._stored_policies[name] = None
        except STORE_ERRORS as exc:
            self.connection_lost(exc)  # unknown for now: asked again on next use

    def refresh_if_due(self) -> None:
        if time.monotonic() >= self._next_refresh:
            self.refresh()

    def refresh(self) -> None:
        """Re-reads every known breaker's state (and now and then its policy) from the store,
        and hands back any outcome decided locally that arrived after the rejoin."""
        if self.shared is None:
            return
        self._next_refresh = time.monotonic() + self.settings.refresh_interval
        names = sorted(set(self.cache.names()) | set(self._breakers))
        store_now, views = self.shared.views(names)
        for name, view in views.items():
            self.cache.update(name, view)
        self.cache.observe_store_time(store_now)
        self._refreshes += 1
        if self._refreshes % 5 == 1:
            for name in list(self._breakers):
                self._load_policy(name)
        self.cache.mark_refreshed()
        if self.tally.names() and not self._degraded:
            self._hand_back()

    def _learn(self, name: str, answer: Admission | RecordResult) -> None:
        self.cache.update(name, answer)
        self.cache.observe_store_time(answer.now_ms)

    # -- decisions ------------------------------------------------------------------------------

    def admit(self, breaker: CircuitBreaker) -> Ticket:
        self._ensure_threads()
        name = breaker.name
        if not self._degraded:
            view = self.cache.get(name)
            if view is not None and self.cache.fresh:
                if view.state.admits_everything:
                    breaker.counts["admitted_from_cache"] += 1
                    # The hot path: fields straight from a validated view, no re-validation.
                    return Ticket.model_construct(breaker=name, epoch=view.epoch, incarnation=view.incarnation,
                                                  state=view.state, permit=None, local=False)
                store_now = self.cache.store_now_ms()
                if view.state == State.FORCED_OPEN or (
                    view.state == State.OPEN and store_now is not None and store_now < view.open_until_ms
                ):
                    breaker.counts["rejected_from_cache"] += 1
                    retry = None
                    if view.state == State.OPEN and store_now is not None:
                        retry = (view.open_until_ms - store_now) / 1000
                    raise CallNotPermitted(name, view.state, retry)
        policy = breaker.configured_policy
        who = process_identity()

        def shared_admit(shared: RedisBackend) -> Admission:
            answer = shared.admit(name, policy, who)
            self._learn(name, answer)
            return answer

        answer = self._fail_safe(shared_admit, lambda: self.local.admit(name, self.effective_policy(name), who))
        if answer.admitted and answer.ticket is not None:
            return answer.ticket
        breaker.counts["rejected"] += 1
        raise CallNotPermitted(name, answer.state, answer.retry_after)

    def advance(self, name: str) -> State:
        """Applies time-driven moves (a due OPEN goes HALF_OPEN); for a paused fleet's timer."""
        policy = self.get(name).configured_policy
        who = process_identity()

        def shared_advance(shared: RedisBackend) -> State:
            view = shared.advance(name, policy, who)
            self.cache.update(name, view)
            return view.state

        return self._fail_safe(shared_advance, lambda: self.local.advance(name, self.effective_policy(name), who).state)

    def record(
        self, breaker: CircuitBreaker, ticket: Ticket, outcome: Outcome, duration: float, *, wait: bool
    ) -> RecordResult | None:
        self._ensure_threads()
        request = RecordRequest(breaker.name, breaker.configured_policy, ticket, outcome, duration, process_identity())
        if wait or self._degraded or ticket.local:
            return self._send_outcomes([request])[0]
        self._recorder.submit(request)
        return None

    def _send_outcomes(self, requests: Sequence[RecordRequest]) -> list[RecordResult | None]:
        """Writes outcomes to the store; those it could not take (unreachable, or refused
        by a full or read-only server) are decided locally and tallied, never dropped, and
        never counted twice: a refused script call changed nothing."""
        results: dict[int, RecordResult | None] = {}
        shared_requests = [r for r in requests if not r.ticket.local]
        batches: dict[int, str] = {}
        if shared_requests and not self._degraded and self.shared is not None:
            refused: BaseException | None = None
            try:
                answers: Sequence[RecordResult | BaseException] = self.shared.record_each(shared_requests)
            except OutcomeUncertain as exc:
                answers = [exc] * len(shared_requests)
                batches = {id(r): batch for r, batch in zip(shared_requests, exc.batches)}
            except STORE_ERRORS as exc:
                answers = [exc] * len(shared_requests)
            for r, answer in zip(shared_requests, answers):
                if isinstance(answer, BaseException):
                    refused = refused or answer
                    continue
                results[id(r)] = answer
                self._learn(r.name, answer)
            if refused is not None:
                self._enter_degraded(refused)
        for r in requests:
            if id(r) not in results:
                results[id(r)] = self._record_locally(r, batches.get(id(r)))
        return [results.get(id(r)) for r in requests]

    def _record_locally(self, request: RecordRequest, batch: str | None = None) -> RecordResult | None:
        """An outcome the store did not take (or may not have: ``batch`` names the write
        that timed out). Tallied for the shared window in every case (handed back at
        rejoin, or at the next re-read when it arrives after one); judged by the local
        breaker while this process is degraded."""
        ticket = request.ticket
        policy = self._known_policy(request.name)
        if self.shared is not None:
            slow = request.outcome == Outcome.SLOW or (
                request.outcome != Outcome.IGNORED and request.duration >= policy.slow_call_duration
            )
            self.tally.add(request.name, int(time.time() * 1000), request.outcome, slow, batch)
        if not self._degraded:
            return None  # admitted by the local breaker before this process rejoined: tallied
        if not ticket.local:
            # Admitted by the shared breaker, ending after Redis went away: it still tells
            # the local breaker about the model, if the local one is judging calls.
            view = self.local.views([request.name])[1].get(request.name)
            if view is None or not view.state.admits_everything:
                return None
            ticket = ticket.model_copy(update={"epoch": view.epoch, "incarnation": view.incarnation, "local": True})
        return self.local.record(
            RecordRequest(request.name, policy, ticket, request.outcome, request.duration, request.who)
        )

    # -- operator actions ---------------------------------------------------------------------------

    def _operator(self, call: Callable[[RedisBackend], T]) -> T:
        if self.shared is None:
            raise StoreUnavailable("no shared store configured")
        try:
            return call(self.shared)
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"breaker store unavailable: {exc}") from exc

    def control(self, name: str, action: Control, reason: str = "", who: str | None = None) -> BreakerEvent:
        breaker = self.get(name)
        if self.shared is None:
            return self.local.control(name, breaker.configured_policy, action, who or process_identity(), reason)
        event = self._operator(
            lambda shared: shared.control(name, breaker.configured_policy, action, who or process_identity(), reason)
        )
        self.cache.apply_event(event)
        self.cache.observe_store_time(event.at_ms)
        return event

    def set_policy(self, name: str, policy: BreakerPolicy, who: str | None = None) -> None:
        self.get(name)
        if self.shared is None:
            self.local.set_policy(name, policy, who or process_identity())
        else:
            self._operator(lambda shared: shared.set_policy(name, policy, who or process_identity()))
        self._stored_policies[name] = policy

    def clear_policy(self, name: str, who: str | None = None) -> None:
        breaker = self.get(name)
        if self.shared is None:
            self.local.clear_policy(name, who or process_identity(), breaker.configured_policy)
        else:
            self._operator(
                lambda shared: shared.clear_policy(name, who or process_identity(), breaker.configured_policy)
            )
        self._stored_policies.pop(name, None)

    def snapshot(self, name: str) -> BreakerSnapshot:
        breaker = self.get(name)
        return self._fail_safe(
            lambda shared: shared.snapshot(name, breaker.configured_policy),
            lambda: self.local.snapshot(name, self.effective_policy(name)),
        )

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        return self._fail_safe(lambda shared: shared.history(name, count), lambda: self.local.history(name, count))
