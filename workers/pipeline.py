"""One job through its model's breaker: what every model task runs, top to bottom.

:func:`run_model_job` reads as the job's path: validate (a caller's bad input is a clear
error, never a model failure) -> cancelled? -> rerouted by its deadline already? -> input
loaded -> a whitelisted caller's bypass -> deadline -> a slot of the slow-start ramp
(workers.slowstart) -> admission, unless the job is a probe that came with its permit
(workers.probe_pump) -> the model call on the breaker's own guard, under the call's own
timeout -> outcome recorded on the job's ticket -> result cached -> the answer.

When the model cannot take the job now (breaker OPEN or FORCED_OPEN, no HALF_OPEN permit,
deadline gone) or fails, the task replaces itself with the model's fallback task: the
caller's ``AsyncResult`` gets the degraded answer under the same task id. A job that asked
to wait is parked instead, until the model recovers or its deadline passes
(workers.handoffs).
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore

from breaker import CallNotPermitted, CircuitBreaker, Outcome, State, Ticket
from breaker.circuit import GuardedCall
from workers import probe_pump, runtime, slowstart, tracing
from workers.answers import answer
from workers.cache import model_version
from workers.devices import handoff as devices
from workers.errors import InvalidJob
from workers.gpu import is_out_of_memory, request_recycle
from workers.handoffs import back_to_queue, degrade, drop_if_cancelled, park, requeue_when_store_down
from workers.inputs import load_input, parse_job
from workers.jobs import Job, one_or_many
from workers.models import ModelSpec
from workers.redis_calls import best_effort, essential
from workers.runners.sizing import allowance
from workers.settings import settings
from workers.timeouts import call_timeout

log = logging.getLogger(__name__)


@requeue_when_store_down
def run_model_job(task: Task, spec: ModelSpec, raw_job: Any) -> dict[str, Any]:
    """Runs one job on its model, or hands it on (fallback, parking lot, queue).

    Parameters:
      task: the running model task.
      spec: its model.
      raw_job: the job as the message carried it.
    """
    started = time.time()
    probe = probe_pump.ticket_from(task.request)  # pre-granted by the HALF_OPEN probe pump
    try:
        job = parse_job(raw_job, spec)
        drop_if_cancelled(task, spec)
        drop_if_rerouted(task, spec, job)
        model_input = essential("loading the job's input", lambda: load_input(spec, job))
        if job.bypass is not None:
            return run_bypass(task, spec, job, model_input, started)
        degrade_if_past_deadline(task, spec, job, started)
        # An ejected device takes no job but its one probe (workers/devices).
        device_probe = devices.admit_here(task, spec, job)
    except BaseException:
        if probe is not None:
            probe_pump.give_back(spec.name, probe)  # the permit goes to another queued job
        raise
    breaker = runtime.breakers().get(spec.name)
    if probe is not None:
        return call_model(task, spec, job, model_input, breaker, probe, started, device_probe)
    # Slow start: after a recovery, wait for a slot of the fleet-wide ramp first.
    with slowstart.ramp_slot(spec.name):
        try:
            ticket = admit(task, spec, job, breaker)
        except BaseException:
            if device_probe:  # the device's probe goes to the next job
                runtime.device_tracker().release(spec.name, devices.device_of(task), task.request.id)
            raise
        return call_model(task, spec, job, model_input, breaker, ticket, started, device_probe)


def drop_if_rerouted(task: Task, spec: ModelSpec, job: Job) -> None:
    """Drops a leftover message: the deadline sweeper may have handed this job to the
    fallback already (same task id). Without Redis, the job runs (its deadline is checked
    next) rather than risk losing it."""
    if job.deadline is None or job.reruns:
        return
    claim = best_effort("claiming the job from the deadline index",
                        lambda: runtime.deadlines().claim(spec.name, task.request.id), "run")
    if claim == "rerouted":
        log.info("%s[%s] already rerouted to the fallback by its deadline; dropped", spec.name, task.request.id)
        raise Ignore()


def degrade_if_past_deadline(task: Task, spec: ModelSpec, job: Job, started: float) -> None:
    """A job whose deadline passed before the model could take it goes to the fallback."""
    if job.deadline_passed(started):
        tracing.note(breaker=spec.name, breaker__decision="deadline")
        degrade(task, spec, job, "deadline passed before the model could take the job")


def run_bypass(task: Task, spec: ModelSpec, job: Job, model_input: Any, started: float) -> dict[str, Any]:
    """A whitelisted caller's job: on the model, without asking its breaker or counting the
    outcome (the caller accepted the risk of a sick model). A caller the policy does not
    list gets a clear error."""
    breaker = runtime.breakers().get(spec.name)
    if job.bypass not in breaker.policy.bypass_callers:
        raise InvalidJob(f"caller {job.bypass!r} may not bypass the {spec.name} breaker (not in bypass_callers)")
    tracing.note(breaker=spec.name, breaker__state=breaker.state, breaker__decision="bypass")
    with call_timeout(allowance(breaker.policy, model_input, settings().hard_time_limit).timeout):
        output = run_model(spec, job, model_input)
    return answer(task, spec, job, output, served_by="model", started=started,
                  reason=f"bypass by {job.bypass}", state=breaker.state)


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


def call_model(
    task: Task, spec: ModelSpec, job: Job, model_input: Any, breaker: CircuitBreaker, ticket: Ticket, started: float,
    device_probe: bool = False,
) -> dict[str, Any]:
    """The model call on the breaker's guard, its outcome recorded on ``ticket`` and in the
    device's record; the answer, or the fallback's when the call failed or timed out (a job
    whose device took the blame runs again elsewhere: workers/devices/handoff.py)."""
    tracing.note(breaker=spec.name, breaker__state=ticket.state,
                 breaker__decision="probe" if ticket.state == State.HALF_OPEN else "admitted")
    calls = runtime.call_log()
    if calls is not None:
        best_effort("tracing a model call", lambda: calls.started(spec.name, ticket, task.request.id,
                                                                  runtime.worker_id()), None)
    # A big valid input gets proportionally more time, and the breaker judges its duration
    # per reference-size input (workers/runners/sizing.py): the caller's load, not sickness.
    allowed = allowance(breaker.policy, model_input, settings().hard_time_limit)
    guarded = breaker.guard(ticket, timeout=allowed.timeout, recorded=allowed.recorded)
    tracker = runtime.device_tracker()
    with tracker.calling(spec.name, devices.device_of(task), devices.worker_name(task), device_probe) as device:
        try:
            with guarded, call_timeout(allowed.timeout):
                runtime.faults().inject(spec.name, devices.worker_name(task))
                output = run_model(spec, job, model_input)
        except Exception as exc:  # noqa: BLE001 - recorded by the guard; the caller's error, or the fallback
            if device.blamed is not None:
                tracing.note(breaker__outcome="ignored", device=device.device, device__ejected=device.blamed)
                devices.run_elsewhere(task, spec, job, device, exc)
            if guarded.outcome == Outcome.IGNORED:
                if device.probe:  # the caller's bad input says nothing of the device: next job probes
                    tracker.release(spec.name, device.device, task.request.id)
                tracing.note(breaker__outcome="ignored")
                raise
            degrade_after_failure(task, spec, job, guarded, exc)
        finally:
            if calls is not None:
                best_effort("tracing a model call's end", lambda: calls.ended(spec.name, task.request.id), None)
        tracker.succeeded(device)
    tracing.note(breaker__outcome=guarded.outcome)
    best_effort("caching a result",
                lambda: runtime.result_cache().put(spec.name, model_version(spec.name), job.content_hash, output), None)
    return answer(task, spec, job, output, served_by="model", started=started, state=ticket.state)


def run_model(spec: ModelSpec, job: Job, model_input: Any) -> dict[str, Any]:
    """The model's output for the job (a text job's single item, or every item)."""
    output = runtime.runner(spec.name).run(model_input, job.options)
    return one_or_many(job, output) if spec.input == "text" else output


def degrade_after_failure(task: Task, spec: ModelSpec, job: Job, guarded: GuardedCall, exc: Exception) -> NoReturn:
    """Says how the model call ended (timed out, out of memory, failed) and hands the job to
    the fallback; a process out of memory is recycled after the job."""
    if guarded.outcome == Outcome.TIMEOUT:
        tracing.note(breaker__outcome="timeout")
        log.warning("%s timed out after %.1fs on %s: %s", spec.name, guarded.elapsed, task.request.id, exc)
        degrade(task, spec, job, f"model timed out after {guarded.elapsed:.1f}s")
    if is_out_of_memory(exc):
        # Counted like any failure, told apart, and this process is replaced after the job
        # so that its (GPU) memory is returned (workers/gpu.py).
        tracing.note(breaker__outcome="out_of_memory")
        log.warning("%s ran out of memory on %s: %s: %s", spec.name, task.request.id, type(exc).__name__, exc)
        request_recycle(f"{spec.name} ran out of memory: {exc}")
        degrade(task, spec, job, f"model out of memory: {type(exc).__name__}: {exc}")
    tracing.note(breaker__outcome="failure")
    log.warning("%s failed on %s: %s: %s", spec.name, task.request.id, type(exc).__name__, exc)
    degrade(task, spec, job, f"model failed: {type(exc).__name__}: {exc}")
