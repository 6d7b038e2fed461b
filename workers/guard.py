"""One job through its model's breaker: what every model task runs.

validate (a caller's bad input is a clear error, never a model failure) -> deadline ->
a slot of the slow-start ramp (workers.slowstart) -> admission, unless the job is a probe
that came with its permit (workers.probe_pump) -> the model call under ``call_timeout`` ->
outcome recorded on the job's ticket -> result cached.
When the model cannot take the job now (breaker OPEN or FORCED_OPEN, no HALF_OPEN permit,
deadline gone) or fails, the task replaces itself with the model's fallback task: the
caller's ``AsyncResult`` gets the degraded answer under the same task id. A job that asked
to wait is parked instead, until the model recovers or its deadline passes.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded

from breaker import CallNotPermitted, CircuitBreaker, InputError, Outcome, State, Ticket
from breaker.errors import CallTimeout
from workers import probe_pump, slowstart, tracing
from workers import runtime as rt
from workers.errors import InvalidJob
from workers.cache import model_version
from workers.gpu import is_out_of_memory, request_recycle
from workers.inputs import load_input, parse_job
from workers.jobs import Job, JobResult, Timings, one_or_many
from workers.models import FALLBACK_QUEUE, ModelSpec
from workers.parking import ParkedJob
from workers.settings import settings
from workers.runners.sizing import allowance
from workers.store import StoreDown, best_effort, essential
from workers.timeouts import call_timeout

log = logging.getLogger(__name__)


def result(
    task: Task, spec: ModelSpec, job: Job, output: dict[str, Any], *, served_by: str, started: float,
    reason: str | None = None, state: State | None = None,
) -> dict[str, Any]:
    now = time.time()
    total_ms = round((now - job.submitted_at) * 1000, 1)
    rt.job_stats().answered(spec.name, served_by, total_ms)
    tracing.note(served_by=served_by, degraded=served_by != "model")
    return JobResult(
        job_id=task.request.id,
        model=spec.name,
        degraded=served_by != "model",
        served_by=served_by,
        reason=reason,
        output=output,
        worker=rt.worker_id(),
        breaker_state=state,
        timings=Timings(
            queued_ms=round((started - job.submitted_at) * 1000, 1),
            run_ms=round((now - started) * 1000, 1),
            total_ms=total_ms,
        ),
    ).model_dump(mode="json")


def degrade(task: Task, spec: ModelSpec, job: Job, reason: str) -> NoReturn:
    """Hands the job to the model's fallback task, under the same task id."""
    sig = task.app.signature(spec.fallback_task, args=(job.model_dump(mode="json"),), kwargs={"reason": reason},
                             queue=FALLBACK_QUEUE)
    task.replace(sig)
    raise Ignore()  # replace() raises this itself; kept for the type checker


PARKED = "PARKED"


def park(task: Task, spec: ModelSpec, job: Job, reason: str, *, fallback_failed: bool = False) -> NoReturn:
    """Keeps the job until its model recovers. The caller sees the task in state PARKED,
    with the reason, until the answer arrives under the same id."""
    entry = ParkedJob(task_id=task.request.id, model=spec.name, job=job.model_dump(mode="json"),
                      reason=reason, fallback_failed=fallback_failed)
    essential("parking a job", lambda: rt.parking().park(entry))
    best_effort("marking a job parked", lambda: rt.ledger().begin(task.request.id, "parked"), None)
    best_effort("marking a job PARKED",
                lambda: task.update_state(state=PARKED, meta={"reason": reason, "parked_at": entry.parked_at}), None)
    log.info("parked %s[%s]: %s", spec.name, task.request.id, reason)
    raise Ignore()


def inject_faults(name: str) -> None:
    """Applies a drill's fault switch; an unreadable switch means no drill."""
    spec = best_effort("reading the fault switch", lambda: rt.faults().current(name), None)
    if spec is not None and spec.active:
        rt.faults().apply(name, spec)


def drop_if_cancelled(task: Task, spec: ModelSpec) -> None:
    """A job cancelled while it waited is never run: its message is dropped here (the
    caller already reads it as cancelled). Without Redis, it runs."""
    if not best_effort("reading the job's record", lambda: rt.ledger().begin(task.request.id), True):
        log.info("%s[%s] was cancelled; dropped unrun", spec.name, task.request.id)
        raise Ignore()


def requeue_when_store_down(run: Any) -> Any:
    """Turns StoreDown into a requeue: the job goes back to the broker, not to the caller."""

    def guarded(task: Task, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        try:
            return run(task, spec, *args, **kwargs)
        except StoreDown as exc:
            log.error("%s[%s] given back to the broker: %s", spec.name, task.request.id, exc)
            raise Reject(str(exc), requeue=True) from exc

    return guarded


def run_bypass(task: Task, spec: ModelSpec, job: Job, model_input: Any, started: float) -> dict[str, Any]:
    """A whitelisted caller's job: on the model, without asking its breaker or counting the
    outcome (the caller accepted the risk of a sick model). A caller the policy does not
    list gets a clear error."""
    breaker = rt.breakers().get(spec.name)
    if job.bypass not in breaker.policy.bypass_callers:
        raise InvalidJob(f"caller {job.bypass!r} may not bypass the {spec.name} breaker (not in bypass_callers)")
    tracing.note(breaker=spec.name, breaker__state=breaker.state, breaker__decision="bypass")
    with call_timeout(allowance(breaker.policy, model_input, rt.settings().hard_time_limit).timeout):
        output = rt.runner(spec.name).run(model_input, job.options)
    if spec.input == "text":
        output = one_or_many(job, output)
    return result(task, spec, job, output, served_by="model", started=started,
                  reason=f"bypass by {job.bypass}", state=breaker.state)


def back_to_queue(task: Task, spec: ModelSpec, job: Job) -> NoReturn:
    """Puts the job back at the end of its model's queue, under its task id: it waits there
    (paused) until a probe permit or the recovery takes it."""
    essential("requeueing a job", lambda: task.app.send_task(spec.task, args=[job.model_dump(mode="json")],
                                                             task_id=task.request.id, queue=spec.queue))
    raise Ignore()


def admit(task: Task, spec: ModelSpec, job: Job, breaker: CircuitBreaker) -> Ticket:
    """The breaker's ticket for a job that came without one; a refused job goes to its
    fallback, or is parked when it asked to wait."""
    try:
        ticket = breaker.admit()
    except CallNotPermitted as refused:
        tracing.note(breaker=spec.name, breaker__state=refused.state, breaker__decision="rejected")
        reason = f"breaker {refused.state.value}"
        if job.wait and refused.state != State.FORCED_OPEN:
            park(task, spec, job, f"{reason}; waiting for the model")
        degrade(task, spec, job, reason)
    if (ticket.state == State.HALF_OPEN and ticket.permit is not None and not ticket.local
            and settings().half_open_consumption == "probes"):
        # A permit this job did not come with (it was taken off the queue just before the
        # pause): probes are handed out by the pump, with a hard limit their permit
        # outlives (workers.probe_pump). Give it back; the job waits in its queue.
        probe_pump.give_back(spec.name, ticket)
        tracing.note(breaker=spec.name, breaker__state=ticket.state, breaker__decision="requeued")
        back_to_queue(task, spec, job)
    return ticket


@requeue_when_store_down
def run_model_job(task: Task, spec: ModelSpec, raw_job: Any) -> dict[str, Any]:
    started = time.time()
    probe = probe_pump.ticket_from(task.request)  # pre-granted by the HALF_OPEN probe pump
    try:
        job = parse_job(raw_job, spec)
        drop_if_cancelled(task, spec)
        if job.deadline is not None and not job.reruns:
            # The sweeper may have handed this job to the fallback already (same task id):
            # then this message is a leftover, dropped unrun. Without Redis, run it (the
            # deadline is checked below) rather than risk losing it.
            claim = best_effort("claiming the job from the deadline index",
                                lambda: rt.deadlines().claim(spec.name, task.request.id), "run")
            if claim == "rerouted":
                log.info("%s[%s] already rerouted to the fallback by its deadline; dropped", spec.name,
                         task.request.id)
                raise Ignore()
        model_input = essential("loading the job's input", lambda: load_input(spec, job))
        if job.bypass is not None:
            return run_bypass(task, spec, job, model_input, started)
        if job.deadline_passed(started):
            tracing.note(breaker=spec.name, breaker__decision="deadline")
            degrade(task, spec, job, "deadline passed before the model could take the job")
    except BaseException:
        if probe is not None:
            probe_pump.give_back(spec.name, probe)  # the permit goes to another queued job
        raise
    breaker = rt.breakers().get(spec.name)
    if probe is not None:
        return call_model(task, spec, job, model_input, breaker, probe, started)
    # Slow start: after a recovery, wait for a slot of the fleet-wide ramp first.
    with slowstart.ramp_slot(spec.name):
        ticket = admit(task, spec, job, breaker)
        return call_model(task, spec, job, model_input, breaker, ticket, started)


def call_model(
    task: Task, spec: ModelSpec, job: Job, model_input: Any, breaker: CircuitBreaker, ticket: Ticket, started: float,
) -> dict[str, Any]:
    """The model call under ``call_timeout``, its outcome recorded on ``ticket``."""
    tracing.note(breaker=spec.name, breaker__state=ticket.state,
                 breaker__decision="probe" if ticket.state == State.HALF_OPEN else "admitted")
    trace = rt.call_log()
    if trace is not None:
        best_effort("tracing a model call", lambda: trace.started(spec.name, ticket, task.request.id, rt.worker_id()), None)
    # A big valid input gets proportionally more time, and the breaker judges its duration
    # per reference-size input (workers/runners/sizing.py): the caller's load, not sickness.
    allowed = allowance(breaker.policy, model_input, rt.settings().hard_time_limit)
    began = time.perf_counter()
    try:
        with call_timeout(allowed.timeout):
            inject_faults(spec.name)
            output = rt.runner(spec.name).run(model_input, job.options)
            if spec.input == "text":
                output = one_or_many(job, output)
    except InputError:
        breaker.record(ticket, Outcome.IGNORED, time.perf_counter() - began)
        tracing.note(breaker__outcome="ignored")
        raise
    except (CallTimeout, SoftTimeLimitExceeded) as exc:
        elapsed = time.perf_counter() - began
        breaker.record(ticket, Outcome.TIMEOUT, allowed.recorded(elapsed))
        tracing.note(breaker__outcome="timeout")
        log.warning("%s timed out after %.1fs on %s: %s", spec.name, elapsed, task.request.id, exc)
        degrade(task, spec, job, f"model timed out after {elapsed:.1f}s")
    except Exception as exc:  # noqa: BLE001 - any model error is a failure the breaker must count
        breaker.record(ticket, Outcome.FAILURE, allowed.recorded(time.perf_counter() - began))
        if is_out_of_memory(exc):
            # Counted like any failure, told apart, and this process is replaced after
            # the job so that its (GPU) memory is returned (workers/gpu.py).
            tracing.note(breaker__outcome="out_of_memory")
            log.warning("%s ran out of memory on %s: %s: %s", spec.name, task.request.id, type(exc).__name__, exc)
            request_recycle(f"{spec.name} ran out of memory: {exc}")
            degrade(task, spec, job, f"model out of memory: {type(exc).__name__}: {exc}")
        tracing.note(breaker__outcome="failure")
        log.warning("%s failed on %s: %s: %s", spec.name, task.request.id, type(exc).__name__, exc)
        degrade(task, spec, job, f"model failed: {type(exc).__name__}: {exc}")
    except BaseException:
        breaker.record(ticket, Outcome.IGNORED, time.perf_counter() - began)  # shutting down
        raise
    finally:
        if trace is not None:
            best_effort("tracing a model call's end", lambda: trace.ended(spec.name, task.request.id), None)
    elapsed = time.perf_counter() - began
    outcome = Outcome.TIMEOUT if elapsed > allowed.timeout else Outcome.SUCCESS
    breaker.record(ticket, outcome, allowed.recorded(elapsed))
    tracing.note(breaker__outcome=outcome)
    best_effort("caching a result",
                lambda: rt.result_cache().put(spec.name, model_version(spec.name), job.content_hash, output), None)
    return result(task, spec, job, output, served_by="model", started=started, state=ticket.state)
