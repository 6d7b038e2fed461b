"""Worker-side machinery driven by the breakers: a consumer bootstep.

Consumption control: this worker consumes a model's queue only while the model's breaker
lets calls through. The step listens to breaker events (pushed by Redis within a few
milliseconds of a transition) and, on the consumer's own event loop (``call_soon`` wakes
it), cancels the queue's consumer on OPEN or FORCED_OPEN and adds it back on HALF_OPEN (so
that probes can flow), CLOSED, DISABLED or METRICS_ONLY. A worker that starts while its
model's breaker is OPEN does not consume. A message the broker hands over for a queue that
was just cancelled goes back to the broker (kombu 5.7 rejects it with requeue instead of
crashing, the failure of celery/celery#2953); one that was already prefetched runs, finds
the breaker OPEN, and is answered by the fallback (never stuck in memory: #2564).

Housekeeping, on a thread of the step, for every model (each guarded by a short Redis lock
or idempotent, so any number of workers may run it):

- while nobody calls a paused model, its breaker would never leave OPEN: when the wait
  ends, the step moves it to HALF_OPEN (``Breakers.advance``; idempotent across workers);
- deadline sweeps of queued jobs (workers.deadlines);
- parked jobs go back to their model when its breaker closes, or to the fallback when their
  deadline passes (workers.parking);
- a heartbeat (``<prefix>:workers:<hostname>``, expiring after 10 s) names the queues this
  worker serves, for readiness checks.

Every pause and resume is appended to ``<prefix>:control`` (a capped stream): which worker,
which model, when, and when the transition that caused it happened.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from celery import bootsteps

from breaker import BreakerEvent, State
from breaker.registry import STORE_ERRORS
from workers import runtime as rt
from workers.jobs import Job
from workers.models import FALLBACK_QUEUE, MODELS
from workers.parking import ParkedJob
from workers.settings import settings

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 0.25
PARKING_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 10


def heartbeat_key(prefix: str, hostname: str) -> str:
    return f"{prefix}:workers:{hostname}"


class ConsumptionControl(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)
    label = "fusebox consumption control"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.consumer: Any = None
        self.models: list[str] | None = None  # model queues this worker was started with
        self._remove_listener: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._records: deque[dict[str, str]] = deque(maxlen=10_000)
        self._parking_due = 0.0
        self._heartbeat_due = 0.0
        self.queues: list[str] = []  # every queue this worker was started with
        self._starting = False

    # -- lifecycle (the consumer restarts it after a broker connection loss) ------------------

    def start(self, c: Any) -> None:
        self.consumer = c
        if self.models is None:
            self.queues = sorted(q.name for q in c.task_consumer.queues)
            self.models = [q for q in self.queues if q in MODELS]
        breakers = rt.breakers()
        for name in MODELS:
            breakers.get(name)
        breakers.wait_until_subscribed(2.0)
        try:
            breakers.refresh()  # the breakers just named, before deciding what to consume
        except STORE_ERRORS:
            pass  # decided on the local breaker meanwhile; the subscriber rejoins later
        self._remove_listener = breakers.add_listener(self._on_event)
        self._stop.clear()
        self._starting = True
        try:
            for model in self.models:
                self._apply(model)  # a worker started while its model is OPEN does not consume
                self._add_queue(c, MODELS[model].bypass_queue)  # whitelisted callers: never paused
        finally:
            self._starting = False
        self._thread = threading.Thread(target=self._housekeeping, name="fusebox-control", daemon=True)
        self._thread.start()

    def stop(self, c: Any) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._flush_records()

    shutdown = stop

    # -- consumption ---------------------------------------------------------------------------

    def _on_event(self, event: BreakerEvent) -> None:
        """Runs on the breaker subscriber's thread: hand over to the consumer's loop."""
        if self.consumer is None or not self.models:
            return
        if event.kind == "transition" and event.breaker in self.models:
            self.consumer.call_soon(self._apply, event.breaker, event)
        elif event.kind == "store":
            for model in self.models:
                self.consumer.call_soon(self._apply, model, event)
        if event.kind == "transition" and event.to_state == State.CLOSED:
            self._parking_due = 0.0
        self._wake.set()

    def _apply(self, model: str, event: BreakerEvent | None = None) -> None:
        """Runs on the consumer's loop: match consumption to the breaker's latest state."""
        c = self.consumer
        if c is None or c.task_consumer is None or self._stop.is_set():
            return  # stopping: a callback queued before stop() must not re-add a queue
        state = rt.breakers().get(model).state
        # Selected for consumption (not "has an active consumer tag": tags appear only when
        # the loop first consumes, after this step started).
        consuming = any(q.name == model for q in c.task_consumer.queues)
        if state.rejects and consuming:
            c.cancel_task_queue(model)
            self._note("pause", model, state, event)
        elif not state.rejects and not consuming:
            self._add_queue(c, model)
            self._note("resume", model, state, event)

    def _add_queue(self, c: Any, name: str) -> None:
        """Consumes ``name`` from now on. While the step starts, the queue is only selected:
        the consumer's loop starts consuming once its message callback is set (consuming
        earlier lets RabbitMQ deliver a waiting message to a consumer without a callback,
        which kills the worker)."""
        if not self._starting:
            c.add_task_queue(name)
            return
        queues = c.app.amqp.queues
        c.task_consumer.add_queue(queues.select_add(queues[name]))

    def _note(self, action: str, model: str, state: State, event: BreakerEvent | None) -> None:
        now = time.time()
        record = {"worker": str(self.consumer.hostname), "model": model, "action": action, "state": state.value,
                  "at": repr(now)}
        view = rt.breakers().known_view(model)
        if view is not None:
            record["epoch"] = str(view.epoch)  # of the state acted on, whatever told us
        if event is not None and event.kind == "transition" and event.breaker == model:
            record["trigger_at_ms"] = str(event.at_ms)
        self._records.append(record)
        log.info("%s consumption of %s (breaker %s)", action, model, state.value)
        self._wake.set()

    def _flush_records(self) -> None:
        if not self._records:
            return
        key = f"{settings().key_prefix}:control"
        try:
            pipe = rt.redis_client().pipeline(transaction=False)
            while self._records:
                pipe.xadd(key, self._records.popleft(), maxlen=10_000, approximate=True)
            pipe.execute()
        except Exception:  # noqa: BLE001 - observability must not break control
            log.warning("could not record consumption changes", exc_info=True)

    # -- housekeeping -----------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(HOUSEKEEPING_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._flush_records()
            if time.monotonic() >= self._heartbeat_due:
                self._heartbeat_due = time.monotonic() + HEARTBEAT_INTERVAL
                self._heartbeat()
            release = time.monotonic() >= self._parking_due
            if release:
                self._parking_due = time.monotonic() + PARKING_INTERVAL
            for model in MODELS:
                self._step(model, release)
            if self.consumer is not None:
                # Pushes may be missed and re-reads update state silently: re-check.
                for model in self.models or ():
                    self.consumer.call_soon(self._apply, model)

    def _heartbeat(self) -> None:
        """Tells readiness checks which queues this worker serves, and which it consumes now
        (a paused queue is still served: it resumes when its breaker lets calls through)."""
        c = self.consumer
        if c is None:
            return
        consuming = sorted(q.name for q in c.task_consumer.queues) if c.task_consumer is not None else []
        beat = {"hostname": str(c.hostname), "queues": self.queues, "consuming": consuming, "at": time.time()}
        try:
            rt.redis_client().set(heartbeat_key(settings().key_prefix, str(c.hostname)), json.dumps(beat),
                                  ex=HEARTBEAT_TTL)
        except Exception:  # noqa: BLE001 - a missed beat shows up as "not ready", as it should
            log.debug("heartbeat failed", exc_info=True)

    def _step(self, model: str, release_parked: bool) -> None:
        breakers = rt.breakers()
        try:
            remaining = breakers.open_remaining(model)
            if remaining is not None and remaining <= 0:
                breakers.advance(model)
            rt.deadlines().sweep(model, resend=self._resend_to_fallback(model, "deadline passed while queued"))
            if release_parked:
                self._release_parked(model, breakers.get(model).state)
        except Exception:  # noqa: BLE001 - keep the loop alive through a Redis hiccup
            log.warning("housekeeping of %s failed", model, exc_info=True)

    def _resend_to_fallback(self, model: str, reason: str) -> Any:
        spec = MODELS[model]

        def resend(task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
            self.consumer.app.send_task(spec.fallback_task, args=args[:1], kwargs={"reason": reason},
                                        task_id=task_id, queue=FALLBACK_QUEUE)

        return resend

    def _release_parked(self, model: str, state: State) -> None:
        lot = rt.parking()
        if not lot.count(model):
            return
        spec = MODELS[model]
        app = self.consumer.app
        if state in (State.CLOSED, State.DISABLED, State.METRICS_ONLY):

            def rerun(entry: ParkedJob) -> None:
                job = Job.model_validate(entry.job)
                job = job.model_copy(update={"reruns": job.reruns + 1})
                app.send_task(spec.task, args=[job.model_dump(mode="json")], task_id=entry.task_id, queue=spec.queue)

            sent = lot.send_on(model, rerun)
            if sent:
                log.info("sent %d parked %s job(s) back to the model", sent, model)
            return
        now = time.time()

        def overdue(entry: ParkedJob) -> bool:
            deadline = entry.job.get("deadline")
            return not entry.fallback_failed and deadline is not None and now >= deadline

        def to_fallback(entry: ParkedJob) -> None:
            app.send_task(spec.fallback_task, args=[entry.job], kwargs={"reason": "deadline passed while parked"},
                          task_id=entry.task_id, queue=FALLBACK_QUEUE)

        lot.send_on(model, to_fallback, select=overdue)
