"""The entry point: every breaker of a process, the store behind them, and the fail-safe.

>>> breakers = Breakers.from_env(policies={"ocr": BreakerPolicy.for_tier("core")})
>>> with breakers.guard("ocr"):
...     run_model()

While Redis answers, decisions are the fleet's: CLOSED admits from the pushed state (no
round trip), outcomes are written behind in batches, OPEN-to-HALF_OPEN and probe permits
are decided by one atomic script call. When a call to Redis fails or takes longer than
``redis_timeout``, the process switches to a local in-memory breaker seeded with the last
state it saw, says so (:attr:`Breakers.degraded`, :meth:`Breakers.health`, a ``store``
event), never lets a Redis error reach the guarded call, and rejoins the shared state as
soon as Redis answers again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from pydantic import BaseModel
from redis.exceptions import RedisError

from breaker.backend import RecordRequest
from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import KeySpace, RedisBackend
from breaker.cache import StateCache
from breaker.circuit import CircuitBreaker
from breaker.errors import BreakerError, CallNotPermitted, ExceptionClassifier
from breaker.events import BreakerEvent, Listener, Listeners
from breaker.policy import BreakerPolicy
from breaker.ramp import RampStatus
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

#: What counts as "the store did not answer": any Redis error, and the socket errors
#: redis-py lets through.
STORE_ERRORS = (RedisError, OSError)


class StoreUnavailable(BreakerError):
    """An operator action needs the shared store and it did not answer."""


class StoreHealth(BaseModel):
    """What health checks and metrics report about the breaker store.

    Parameters:
      shared: True when decisions are the fleet's (Redis answers).
      degraded: True when this process decides with its local breaker.
      degraded_since: wall-clock seconds when it lost the store, if degraded.
      last_error: the error that made it degraded.
      subscribed: whether pushes from the store are flowing.
      pending_outcomes: outcomes waiting to be written.
      dropped_outcomes: outcomes dropped because the queue was full.
    """

    shared: bool
    degraded: bool
    degraded_since: float | None = None
    last_error: str | None = None
    subscribed: bool
    pending_outcomes: int
    dropped_outcomes: int


_HOST = socket.gethostname()


def process_identity() -> str:
    return f"{_HOST}:{os.getpid()}"


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
        self.cache = StateCache(clock or time.monotonic, max_age=3 * self.settings.refresh_interval)
        self.local = InMemoryBackend(clock=clock, on_event=self.listeners.dispatch)
        self._subscribe = subscribe and shared is not None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stored_policies: dict[str, BreakerPolicy | None] = {}
        self._lock = threading.RLock()
        self._degraded = shared is None
        self._degraded_since: float | None = None
        self._last_error: str | None = None
        self._next_refresh = 0.0
        self._refreshes = 0
        self._pid = -1
        self._recorder: Recorder
        self._subscriber: Subscriber
        self._closed = False
        self._start_threads()

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

    def _ensure_threads(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._lock = threading.RLock()
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
                self.connection_lost(exc)
        return sorted(known)

    # -- the fail-safe --------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while this process decides with its local breaker."""
        return self._degraded

    def health(self) -> StoreHealth:
        return StoreHealth(
            shared=not self._degraded,
            degraded=self._degraded and self.shared is not None,
            degraded_since=self._degraded_since,
            last_error=self._last_error,
            subscribed=self.cache.subscribed,
            pending_outcomes=self._recorder.pending,
            dropped_outcomes=self._recorder.dropped,
        )

    def _fail_safe(self, shared_call: Callable[[RedisBackend], T], local_call: Callable[[], T]) -> T:
        if not self._degraded and self.shared is not None:
            try:
                return shared_call(self.shared)
            except STORE_ERRORS as exc:
                self._enter_degraded(exc)
        return local_call()

    def _enter_degraded(self, exc: BaseException) -> None:
        with self._lock:
            if self._degraded:
                return
            # First of all: nothing below may reach for the store again.
            self._degraded = True
            self._degraded_since = time.time()
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.cache.subscribed = False
            log.warning("breaker store unreachable (%s); deciding with the local breaker", exc)
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
        self.listeners.dispatch(BreakerEvent(kind="store", reason=f"lost: {self._last_error}", who=who, local=True))

    def connection_lost(self, exc: BaseException) -> None:
        """The subscriber's connection broke: degrade if the store itself is gone."""
        if self._degraded or self.shared is None:
            return
        try:
            self.shared.client.ping()
        except STORE_ERRORS:
            self._enter_degraded(exc)

    def try_rejoin(self) -> bool:
        """Called while degraded: back to the shared store if it answers."""
        if self.shared is None:
            return False
        try:
            self.shared.client.ping()
        except STORE_ERRORS:
            return False
        with self._lock:
            self._degraded = False
            self._degraded_since = None
            self.local.forget()
            self._stored_policies.clear()
            self._next_refresh = 0.0
        log.warning("breaker store reachable again; rejoined the shared breakers")
        self.listeners.dispatch(BreakerEvent(kind="store", reason="regained", who=process_identity()))
        return True

    # -- pushed state -----------------------------------------------------------------------------

    def known_view(self, name: str) -> StateView | None:
        """The shared breaker's state, epoch and wait as this process last heard them (no
        round trip); None before it heard anything, and while degraded."""
        return None if self._degraded else self.cache.get(name)

    def known_state(self, name: str) -> State:
        if self._degraded:
            return self.local.snapshot(name, self.effective_policy(name)).state
        view = self.cache.get(name)
        return view.state if view is not None else State.CLOSED

    def open_remaining(self, name: str) -> float | None:
        """Seconds until an OPEN breaker's wait ends, on the store's clock (0 when due);
        None when it is not OPEN as far as this process knows, or the clock is unknown."""
        if self._degraded:
            snap = self.local.snapshot(name, self.effective_policy(name))
            return snap.retry_after
        view = self.cache.get(name)
        store_now = self.cache.store_now_ms()
        if view is None or view.state != State.OPEN or store_now is None:
            return None
        return max(0.0, (view.open_until_ms - store_now) / 1000)

    def effective_policy(self, name: str) -> BreakerPolicy:
        """The stored policy if the store holds one, else the configured one. A process
        reads the stored policy on first use, then keeps it current from policy events and
        periodic re-reads."""
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
        """Re-reads every known breaker's state (and now and then its policy) from the store."""
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
        shared_requests = [r for r in requests if not r.ticket.local]
        results: dict[int, RecordResult | None] = {}

        def shared_record(shared: RedisBackend) -> None:
            for r, answer in zip(shared_requests, shared.record_many(shared_requests)):
                results[id(r)] = answer
                self._learn(r.name, answer)

        def local_record() -> None:
            for r in shared_requests:
                results[id(r)] = self._record_locally(r)

        if shared_requests:
            self._fail_safe(shared_record, local_record)
        for r in requests:
            if r.ticket.local:
                results[id(r)] = self._record_locally(r)
        return [results.get(id(r)) for r in requests]

    def _record_locally(self, request: RecordRequest) -> RecordResult | None:
        if not self._degraded and request.ticket.local:
            return None  # admitted by the local breaker before this process rejoined: moot
        ticket = request.ticket
        policy = self.effective_policy(request.name)
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
            raise StoreUnavailable(f"breaker store unreachable: {exc}") from exc

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
        self.get(name)
        if self.shared is None:
            self.local.clear_policy(name, who or process_identity())
        else:
            self._operator(lambda shared: shared.clear_policy(name, who or process_identity()))
        self._stored_policies[name] = None

    def snapshot(self, name: str) -> BreakerSnapshot:
        breaker = self.get(name)
        return self._fail_safe(
            lambda shared: shared.snapshot(name, breaker.configured_policy),
            lambda: self.local.snapshot(name, self.effective_policy(name)),
        )

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        return self._fail_safe(lambda shared: shared.history(name, count), lambda: self.local.history(name, count))

    # -- slow start (breaker.ramp) ---------------------------------------------------------------

    def ramp(self, name: str, action: str = "status", arg: str = "") -> RampStatus:
        """A slow-start action on breaker ``name``: ``arm`` (``arg``: the current HALF_OPEN
        epoch, whose recovery is to ramp), ``acquire`` / ``release`` a slot (``arg``: the caller's token), or
        ``status``. Decided by the store like every breaker decision; by the local breaker
        while the store is unreachable.

        Parameters:
          name: the breaker.
          action: see above.
          arg: see above.
        """
        policy = self.get(name).configured_policy
        return self._fail_safe(lambda shared: shared.ramp(name, policy, action, arg),
                               lambda: self.local.ramp(name, self.effective_policy(name), action, arg))
