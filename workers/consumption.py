"""Worker-side machinery driven by the breakers: two consumer bootsteps.

:class:`ConsumptionControl` decides what this worker takes from its model queues:

- it consumes a model's queue only while the model's breaker admits every call (CLOSED,
  DISABLED, METRICS_ONLY). It listens to breaker events (pushed by Redis within a few
  milliseconds of a transition) and, on the consumer's own event loop (``call_soon`` wakes
  it), cancels the queue's consumer on OPEN, FORCED_OPEN and HALF_OPEN and adds it back when
  the breaker admits again. A worker that starts while its model's breaker is OPEN does not
  consume. A message the broker hands over for a queue that was just cancelled goes back to
  the broker (kombu 5.7 rejects it with requeue instead of crashing, the failure of
  celery/celery#2953); one that was already prefetched runs, finds the breaker OPEN, and is
  answered by the fallback or parked (never stuck in memory: #2564);
- HALF_OPEN consumes only probes: a pump (workers.probe_pump) takes a probe permit first and
  then one job from the paused queue, which it hands to the model's probe queue with the
  permit; the rest of the backlog stays queued. The pump arms the breaker's slow-start ramp
  (breaker.ramp), which model calls then go through after the probes close the breaker
  (workers.slowstart);
- while nobody calls a paused model its breaker would never leave OPEN: when the wait ends,
  the step moves it to HALF_OPEN (``Breakers.advance``; idempotent across workers).

It runs on the consumer's timer (``c.timer.call_repeatedly``, as Celery's own heart step
does), every :data:`CONTROL_INTERVAL`, besides reacting to events: pushes may be missed and
re-reads update state silently. Workers that consume no model queue do not include it.

:class:`Housekeeping`, on the same timer, for every model (each guarded by a short Redis lock
or idempotent, so any number of workers may run it):

- deadline sweeps of queued jobs (workers.deadlines);
- parked jobs go back to their model when its breaker closes (through the ramp, like any
  job), or to the fallback when their deadline passes (workers.parking);
- a heartbeat (``<prefix>:workers:<hostname>``, expiring after 10 s) names the queues this
  worker serves, for readiness checks;
- the audit stream: every pause and resume is appended to ``<prefix>:control`` (a capped
  stream): which worker, which model, when, and when the transition that caused it happened.

An operator's ``celery control cancel_consumer <model>`` holds: the step resumes only the
queues it paused itself. ``add_consumer`` of a model queue whose breaker does not admit is
undone at the next check (within :data:`CONTROL_INTERVAL`): the breaker decides when a
model queue is consumed.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

from celery import bootsteps

from breaker import STORE_ERRORS, BreakerEvent, State
from breaker.keyspace import Keyspace
from workers import probe as worker_probe
from workers import runtime
from workers.devices.gate import DeviceGate
from workers.jobs import Job
from workers.models import FALLBACK_QUEUE, MODELS
from workers.parking import ParkedJob
from workers.probe_pump import ProbePump, probe_queue
from workers.settings import settings

log = logging.getLogger(__name__)

CONTROL_INTERVAL = 0.1
HOUSEKEEPING_INTERVAL = 0.25
PARKING_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 10


def _consumes_a_model(c: Any) -> bool:
    selected = c.app.amqp.queues.consume_from
    return not selected or any(name in MODELS for name in selected)


class ConsumptionControl(bootsteps.StartStopStep):
    """Pause, resume, probe-only HALF_OPEN and the OPEN-to-HALF_OPEN timer (see the module)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    label = "fusebox consumption control"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        parent.fusebox_control = self  # the housekeeping step flushes its audit records
        self.consumer: Any = None
        self.models: list[str] | None = None  # model queues this worker was started with
        self.queues: list[str] = []  # every queue this worker was started with
        self.records: deque[dict[str, str]] = deque(maxlen=10_000)
        self._paused: set[str] = set()  # queues this step cancelled (and so may add back)
        self._remove_listener: Any = None
        self._tref: Any = None
        self._pump: ProbePump | None = None
        self.devices: DeviceGate | None = None  # this worker's devices ejected? (workers/devices)
        self._stopping = False
        self._starting = False

    def include_if(self, c: Any) -> bool:
        return _consumes_a_model(c)

    # -- lifecycle (the consumer restarts it after a broker connection loss) ------------------

    def start(self, c: Any) -> None:
        self.consumer = c
        self._stopping = False
        if self.models is None:
            self.queues = sorted(q.name for q in c.task_consumer.queues)
            self.models = [q for q in self.queues if q in MODELS]
        breakers = runtime.breakers()
        for name in MODELS:
            breakers.get(name)
        breakers.wait_until_subscribed(2.0)
        try:
            breakers.refresh()  # the breakers just named, before deciding what to consume
        except STORE_ERRORS:
            pass  # decided on the local breaker meanwhile; the subscriber rejoins later
        self._pump = ProbePump(c.app)
        self.devices = DeviceGate(str(c.hostname), self.models, int(getattr(c.controller, "concurrency", 1) or 1))
        self._remove_listener = breakers.add_listener(self._on_event)
        self._starting = True  # queues are only selected until the consumer loop consumes
        try:
            for model in self.models:
                self._apply(model)  # a worker started while its model is OPEN does not consume
                self._add_queue(c, MODELS[model].bypass_queue)  # whitelisted callers: never paused
                self._add_queue(c, probe_queue(model))  # pumped probes: never paused
        finally:
            self._starting = False
        self._tref = c.timer.call_repeatedly(CONTROL_INTERVAL, self._tick, priority=10)

    def stop(self, c: Any) -> None:
        self._stopping = True
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    shutdown = stop

    # -- reacting ------------------------------------------------------------------------------

    def _on_event(self, event: BreakerEvent) -> None:
        """Runs on the breaker subscriber's thread: hand over to the consumer's loop."""
        if self.consumer is None or not self.models:
            return
        if event.kind == "transition" and event.breaker in self.models:
            self.consumer.call_soon(self._control, event.breaker, event)
        elif event.kind == "store":
            for model in self.models:
                self.consumer.call_soon(self._control, model, event)

    def _tick(self) -> None:
        if self.devices is not None:
            self.devices.refresh()  # whatever the breaker's state: the devices stay live
        for model in self.models or ():
            try:
                remaining = runtime.breakers().open_remaining(model)
                if remaining is not None and remaining <= 0:
                    runtime.breakers().advance(model)
            except Exception:  # noqa: BLE001 - keep the timer alive through a Redis hiccup
                log.warning("could not advance the %s breaker", model, exc_info=True)
            self._control(model)

    def _control(self, model: str, event: BreakerEvent | None = None) -> None:
        """Runs on the consumer's loop: consumption follows the breaker; HALF_OPEN pumps probes."""
        self._apply(model, event)
        if self._stopping or self._pump is None:
            return
        breakers = runtime.breakers()
        if (breakers.get(model).state != State.HALF_OPEN or breakers.degraded
                or settings().half_open_consumption != "probes"):
            return
        try:
            view = breakers.known_view(model)
            if view is not None:
                breakers.ramp(model, "arm", str(view.epoch))  # before any probe can close it
            self._pump.pump(model)
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.warning("probe pump of %s failed", model, exc_info=True)

    def _apply(self, model: str, event: BreakerEvent | None = None) -> None:
        """Matches consumption of ``model``'s queue to the breaker's latest state."""
        c = self.consumer
        if c is None or c.task_consumer is None or self._stopping:
            return  # stopping: a callback queued before stop() must not re-add a queue
        breakers = runtime.breakers()
        state = breakers.get(model).state
        # HALF_OPEN takes only probes (the pump), except for a process deciding locally
        # (store lost): its local permits cannot travel, so its workers probe by consuming.
        probes_only = settings().half_open_consumption == "probes" and not breakers.degraded
        wanted = not state.rejects and not (state == State.HALF_OPEN and probes_only)
        # An ejected device stops taking this model's jobs here only (workers/devices).
        ejected = wanted and self.devices is not None and self.devices.paused(model)
        wanted = wanted and not ejected
        # Selected for consumption (not "has an active consumer tag": tags appear only when
        # the loop first consumes, after this step started).
        consuming = any(q.name == model for q in c.task_consumer.queues)
        if not wanted and consuming:
            c.cancel_task_queue(model)
            self._paused.add(model)
            self._note("pause", model, state, event, "devices ejected" if ejected else "")
        elif wanted and not consuming and model in self._paused:
            self._add_queue(c, model)
            self._paused.discard(model)
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

    def _note(self, action: str, model: str, state: State, event: BreakerEvent | None, cause: str = "") -> None:
        now = time.time()
        record = {"worker": str(self.consumer.hostname), "model": model, "action": action, "state": state.value,
                  "at": repr(now)}
        if cause:
            record["cause"] = cause  # not the breaker: this worker's devices (workers/devices)
        view = runtime.breakers().known_view(model)
        if view is not None:
            record["epoch"] = str(view.epoch)  # of the state acted on, whatever told us
        if event is not None and event.kind == "transition" and event.breaker == model:
            record["trigger_at_ms"] = str(event.at_ms)
        self.records.append(record)
        log.info("%s consumption of %s (breaker %s%s)", action, model, state.value, f"; {cause}" if cause else "")


class Housekeeping(bootsteps.StartStopStep):
    """Deadline sweeps, parked jobs, the heartbeat and the audit stream (see the module)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    label = "fusebox housekeeping"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.consumer: Any = None
        # Every queue this worker was started with (read before any pause deselects one).
        self.queues = sorted(parent.app.amqp.queues.consume_from or parent.app.amqp.queues)
        self._trefs: list[Any] = []
        self._parking_due = 0.0
        self._remove_listener: Any = None

    def start(self, c: Any) -> None:
        self.consumer = c
        self._remove_listener = runtime.breakers().add_listener(self._on_event)
        self._trefs = [
            c.timer.call_repeatedly(HOUSEKEEPING_INTERVAL, self._housekeeping, priority=20),
            c.timer.call_repeatedly(HEARTBEAT_INTERVAL, self._heartbeat, priority=30),
        ]
        self._heartbeat()

    def stop(self, c: Any) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for tref in self._trefs:
            tref.cancel()
        self._trefs = []
        self._flush_records()

    shutdown = stop

    def _on_event(self, event: BreakerEvent) -> None:
        if event.kind == "transition" and event.to_state == State.CLOSED:
            self._parking_due = 0.0  # parked jobs go back at the next round, not a second later

    def _flush_records(self) -> None:
        control: ConsumptionControl | None = getattr(self.consumer, "fusebox_control", None)
        records = control.records if control is not None else None
        if not records:
            return
        key = Keyspace(settings().key_prefix).consumption_audit
        try:
            pipe = runtime.redis_client().pipeline(transaction=False)
            while records:
                pipe.xadd(key, records.popleft(), maxlen=10_000, approximate=True)
            pipe.execute()
        except Exception:  # noqa: BLE001 - observability must not break control
            log.warning("could not record consumption changes", exc_info=True)

    def _housekeeping(self) -> None:
        self._flush_records()
        release = time.monotonic() >= self._parking_due
        if release:
            self._parking_due = time.monotonic() + PARKING_INTERVAL
        # This runs on the consumer's loop, which must stay free to pause a queue within
        # milliseconds of a trip: one pipelined look at every model first, and the real
        # work (each a few round trips under a lock) only where there is some.
        try:
            work = self._pending_work()
        except Exception:  # noqa: BLE001 - keep the timer alive through a Redis hiccup
            log.warning("housekeeping could not read its work", exc_info=True)
            return
        for model, (due, parked) in work.items():
            if due or (release and parked):
                self._step(model, due, release and parked)

    def _pending_work(self) -> dict[str, tuple[bool, bool]]:
        """Per model: (deadline sweep due, jobs parked), read in one round trip."""
        index, lot, now = runtime.deadlines(), runtime.parking(), time.time()
        pipe = runtime.redis_client().pipeline(transaction=False)
        for model in MODELS:
            pipe.zcount(index.key(model), "-inf", now)
            pipe.llen(index.reroute_key(model))  # moved, not yet re-sent (a crash in between)
            pipe.hlen(lot.key(model))
        answers = pipe.execute()
        return {
            model: (bool(answers[3 * i] or answers[3 * i + 1]), bool(answers[3 * i + 2]))
            for i, model in enumerate(MODELS)
        }

    def _heartbeat(self) -> None:
        """Tells readiness checks which queues this worker serves, and which it consumes now
        (a paused queue is still served: it resumes when its breaker lets calls through)."""
        c = self.consumer
        if c is None:
            return
        consuming = sorted(q.name for q in c.task_consumer.queues) if c.task_consumer is not None else []
        control: ConsumptionControl | None = getattr(c, "fusebox_control", None)
        devices = control.devices if control is not None else None
        ejected = [m for m in control.models or () if devices.paused(m)] if control and devices else []
        beat = {"hostname": str(c.hostname), "queues": self.queues, "consuming": consuming, "at": time.time(),
                "ejected": ejected}
        try:
            runtime.redis_client().set(Keyspace(settings().key_prefix).heartbeat(str(c.hostname)), json.dumps(beat),
                                  ex=HEARTBEAT_TTL)
        except Exception:  # noqa: BLE001 - a missed beat shows up as "not ready", as it should
            log.debug("heartbeat failed", exc_info=True)
        worker_probe.beat(beat)  # the probe file and the fleet index

    def _step(self, model: str, sweep: bool, release_parked: bool) -> None:
        try:
            if sweep:
                runtime.deadlines().sweep(model, resend=self._resend_to_fallback(model, "deadline passed while queued"))
            if release_parked:
                self._release_parked(model, runtime.breakers().get(model).state)
        except Exception:  # noqa: BLE001 - keep the timer alive through a Redis hiccup
            log.warning("housekeeping of %s failed", model, exc_info=True)

    def _resend_to_fallback(self, model: str, reason: str) -> Any:
        spec = MODELS[model]

        def resend(task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
            self.consumer.app.send_task(spec.fallback_task, args=args[:1], kwargs={"reason": reason},
                                        task_id=task_id, queue=FALLBACK_QUEUE)

        return resend

    def _release_parked(self, model: str, state: State) -> None:
        lot = runtime.parking()
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
                log.info("sent %d parked %s job(s) back to the model (they run through the slow-start ramp)",
                         sent, model)
            return
        now = time.time()

        def overdue(entry: ParkedJob) -> bool:
            deadline = entry.job.get("deadline")
            return not entry.fallback_failed and deadline is not None and now >= deadline

        def to_fallback(entry: ParkedJob) -> None:
            app.send_task(spec.fallback_task, args=[entry.job], kwargs={"reason": "deadline passed while parked"},
                          task_id=entry.task_id, queue=FALLBACK_QUEUE)

        lot.send_on(model, to_fallback, select=overdue)
