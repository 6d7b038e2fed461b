"""The entry point: every breaker of a process, the store behind them, and the fail-safe.

>>> breakers = Breakers.from_url("redis://127.0.0.1:6379/0", policies={"ocr": BreakerPolicy.for_tier("core")})
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
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from breaker.backend import RecordRequest
from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import RedisBackend
from breaker.cache import StateCache
from breaker.circuit import CircuitBreaker
from breaker.connection import redis_client
from breaker.errors import STORE_ERRORS, CallNotPermitted, ExceptionClassifier, OutcomeUncertain, StoreUnavailable
from breaker.events import BreakerEvent, Listener, Listeners
from breaker.failsafe import FailSafe, StoreHealth
from breaker.identity import process_identity
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.ramp import RampStatus
from breaker.recorder import Recorder
from breaker.refusals import counted_locally, send_refusals
from breaker.settings import BreakerSettings
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
from breaker.sync import StateSync

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Breakers", "StoreHealth", "process_identity"]


_REGISTRIES: weakref.WeakSet[Breakers] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_REGISTRIES):
        registry._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Breakers:
    """Every breaker of this process.

    Where each behaviour lives: admission and outcomes here; the fail-safe (store lost,
    rejoin, hand-back, health) in :class:`~breaker.failsafe.FailSafe`; what the process
    knows of the shared states and policies in :class:`~breaker.sync.StateSync`; the
    pub/sub thread in :class:`~breaker.subscriber.Subscriber`; write-behind in
    :class:`~breaker.recorder.Recorder`.

    Parameters:
      shared: the fleet's store; None runs on the local breaker only (unit tests, or a
        single process that needs no sharing).
      settings: timeouts and intervals (``BreakerSettings()`` by default).
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
        self.failsafe = FailSafe(self)
        self.sync = StateSync(self)
        self._subscribe = subscribe and shared is not None
        self._breakers: dict[str, CircuitBreaker] = {}
        # The ticket handed out for the CLOSED breaker's current view (tickets are
        # immutable: every call of one epoch can share it, nothing is allocated per call).
        self._hot_tickets: dict[str, tuple[StateView, Ticket]] = {}
        #: Admissions that had to ask the store (not decided from the pushed state).
        self.store_admissions = 0
        self._lock = threading.RLock()
        self._forked = False
        self._pid = -1
        self.recorder: Recorder
        self._subscriber: Subscriber
        self._closed = False
        self._start_threads()
        _REGISTRIES.add(self)

    @classmethod
    def from_url(cls, url: str, settings: BreakerSettings | None = None, **kwargs: object) -> Breakers:
        """Breakers on the Redis at ``url`` (any URL :mod:`breaker.connection` takes).

        Parameters:
          url: where the breakers live; it wins over ``settings.redis_url``.
          settings: timeouts, intervals and key prefix (defaults when omitted; fusebox's
            workers pass ``workers.settings.settings().breaker_settings()``).
          kwargs: as for the constructor (``policies``, ``default_policy``...).
        """
        settings = (settings or BreakerSettings()).model_copy(update={"redis_url": url})
        client = redis_client(url, settings.redis_timeout)
        backend = RedisBackend(client, Keyspace(settings.key_prefix), stream_maxlen=settings.stream_maxlen)
        return cls(backend, settings=settings, **kwargs)  # type: ignore[arg-type]

    # -- threads, fork safety, shutdown --------------------------------------------------------

    def _start_threads(self) -> None:
        """(Re)creates the threads; after a fork the child gets its own (Celery's prefork
        pool forks workers from a parent that may have used these breakers)."""
        self._pid = os.getpid()
        self.recorder = self._new_recorder()
        self._subscriber = Subscriber(self)
        self.cache.distrust()  # kept, untrusted: they only seed a forked child's local breaker
        # What a parent knew of stored policies may be stale by the time a child runs.
        self.sync.forget_policies()
        if self._closed:
            return
        self.recorder.start()
        if self._subscribe:
            self._subscriber.start()

    def _new_recorder(self) -> Recorder:
        """The write-behind queue of outcomes and refusals (one construction for the start
        and a forked child)."""
        return Recorder(self._send_outcomes, lambda counts: send_refusals(self, counts),
                        linger=self.settings.record_linger)

    def _after_fork(self) -> None:
        """In a forked child, first: the locks the parent's threads may have held are replaced,
        the threads restart on first use; the queue and tally stay the parent's (sent once)."""
        self._lock = threading.RLock()
        self._forked = True
        self.recorder = self._new_recorder()
        self.failsafe.forget_tally()
        self.cache.reset_lock()
        self.local.reset_lock()
        self.listeners.reset_lock()
        self.failsafe.reset_lock()

    def _ensure_threads(self) -> None:
        # _forked is set by the fork hook (os.register_at_fork): no getpid() system call
        # on every guarded call.
        if self._forked:
            with self._lock:
                if self._forked:
                    self._forked = False
                    self._start_threads()

    def wait_until_subscribed(self, timeout: float = 5.0) -> bool:
        """Blocks until pushes from the store flow (tests and start-up use it)."""
        self._ensure_threads()
        return self._subscriber.connected.wait(timeout)

    def resubscribe(self) -> None:
        """Subscribes afresh: replays what was missed and re-reads every state."""
        self._subscriber.resubscribe()

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every queued outcome has been written."""
        return self.recorder.flush(timeout)

    def close(self) -> None:
        """Writes what is queued and stops the threads."""
        self._closed = True
        if self._pid == os.getpid():
            self.recorder.stop()
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

    def breaker_names(self) -> list[str]:
        """The breakers this process created."""
        return list(self._breakers)

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
        if not self.failsafe.degraded and self.shared is not None:
            try:
                known.update(self.shared.names())
            except STORE_ERRORS as exc:
                self.failsafe.lost(exc)
        return sorted(known)

    # -- the fail-safe and what the process knows (see failsafe.py and sync.py) ----------------

    @property
    def degraded(self) -> bool:
        """True while this process decides with its local breaker."""
        return self.failsafe.degraded

    def health(self) -> StoreHealth:
        return self.failsafe.health()

    def known_view(self, name: str) -> StateView | None:
        self._ensure_threads()
        return self.sync.known_view(name)

    def known_state(self, name: str) -> State:
        self._ensure_threads()
        return self.sync.known_state(name)

    def open_remaining(self, name: str) -> float | None:
        self._ensure_threads()
        return self.sync.open_remaining(name)

    def effective_policy(self, name: str) -> BreakerPolicy:
        self._ensure_threads()  # a forked child first forgets what its parent knew
        return self.sync.effective_policy(name)

    def refresh(self) -> None:
        self.sync.refresh()

    # -- decisions ------------------------------------------------------------------------------

    def admit(self, breaker: CircuitBreaker) -> Ticket:
        if self._forked:
            self._ensure_threads()
        name = breaker.name
        if not self.failsafe.degraded:
            cache = self.cache
            view = cache.get(name)
            if view is not None and cache.fresh:
                if view.state.admits_everything:
                    # The hot path: no round trip, no allocation.
                    hot = self._hot_tickets.get(name)
                    if hot is not None and hot[0] is view:
                        return hot[1]
                    ticket = Ticket.model_construct(breaker=name, epoch=view.epoch, incarnation=view.incarnation,
                                                    state=view.state, permit=None, local=False)
                    self._hot_tickets[name] = (view, ticket)
                    return ticket
                store_now = cache.store_now_ms()
                if view.state == State.FORCED_OPEN or (
                    view.state == State.OPEN and store_now is not None and store_now < view.open_until_ms
                ):
                    retry = None
                    if view.state == State.OPEN and store_now is not None:
                        retry = (view.open_until_ms - store_now) / 1000
                    self.recorder.reject(name)  # counted with the next batch of outcomes
                    raise CallNotPermitted(name, view.state, retry)
        self.store_admissions += 1
        policy = breaker.configured_policy
        who = process_identity()

        def shared_admit(shared: RedisBackend) -> Admission:
            answer = shared.admit(name, policy, who)
            self.sync.learn(name, answer)
            return answer

        answer = self.failsafe.call(
            shared_admit, lambda: counted_locally(self, name, self.local.admit(name, self.effective_policy(name), who)))
        if answer.admitted and answer.ticket is not None:
            return answer.ticket
        raise CallNotPermitted(name, answer.state, answer.retry_after)

    def advance(self, name: str) -> State:
        """Applies time-driven moves (a due OPEN goes HALF_OPEN); for a paused fleet's timer."""
        policy = self.get(name).configured_policy
        who = process_identity()

        def shared_advance(shared: RedisBackend) -> State:
            view = shared.advance(name, policy, who)
            self.cache.update(name, view)
            return view.state

        return self.failsafe.call(shared_advance,
                                  lambda: self.local.advance(name, self.effective_policy(name), who).state)

    def record(
        self, breaker: CircuitBreaker, ticket: Ticket, outcome: Outcome, duration: float, *, wait: bool
    ) -> RecordResult | None:
        if self._forked:
            self._ensure_threads()
        request = RecordRequest(breaker.name, breaker.configured_policy, ticket, outcome, duration, process_identity())
        if wait or ticket.local or self.failsafe.degraded:
            return self._send_outcomes([request])[0]
        # A failure, timeout or slow call is written at once (no linger): trips come early.
        urgent = outcome is not Outcome.SUCCESS or duration >= self.sync.known_policy(breaker.name).slow_call_duration
        self.recorder.submit(request, urgent)
        return None

    def _send_outcomes(self, requests: Sequence[RecordRequest]) -> list[RecordResult | None]:
        """Writes outcomes to the store; those it could not take (unreachable, or refused
        by a full or read-only server) are decided locally and tallied, never dropped, and
        never counted twice: a refused script call changed nothing, and a write that timed
        out is asked about before its outcomes are handed back."""
        results: dict[int, RecordResult | None] = {}
        shared_requests = [r for r in requests if not r.ticket.local]
        batches: dict[int, str] = {}
        if shared_requests and not self.failsafe.degraded and self.shared is not None:
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
                self.sync.learn(r.name, answer)
            if refused is not None:
                self.failsafe.lost(refused)
        for r in requests:
            if id(r) not in results:
                results[id(r)] = self.failsafe.record_locally(r, batches.get(id(r)))
        return [results.get(id(r)) for r in requests]

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
        self.sync.stored_policies[name] = policy

    def clear_policy(self, name: str, who: str | None = None) -> None:
        breaker = self.get(name)
        if self.shared is None:
            self.local.clear_policy(name, who or process_identity(), breaker.configured_policy)
        else:
            self._operator(
                lambda shared: shared.clear_policy(name, who or process_identity(), breaker.configured_policy)
            )
        self.sync.stored_policies.pop(name, None)

    def snapshot(self, name: str) -> BreakerSnapshot:
        breaker = self.get(name)
        return self.failsafe.call(
            lambda shared: shared.snapshot(name, breaker.configured_policy),
            lambda: self.local.snapshot(name, self.effective_policy(name)),
        )

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        return self.failsafe.call(lambda shared: shared.history(name, count),
                                  lambda: self.local.history(name, count))

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
        return self.failsafe.call(lambda shared: shared.ramp(name, policy, action, arg),
                                  lambda: self.local.ramp(name, self.effective_policy(name), action, arg))
