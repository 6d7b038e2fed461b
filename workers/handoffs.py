"""Where a job goes when this task does not answer it: to its model's fallback task, to the
parking lot, back to its queue, nowhere (cancelled), or back to the broker (Redis down).

Each hand-off but the last ends the task with Celery's ``Ignore``: the job's answer comes
later, under the same task id, from whoever takes it on.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject

from workers import runtime
from workers.errors import StoreDown
from workers.app import broker_priority
from workers.jobs import MAX_PRIORITY, Job
from workers.models import FALLBACK_QUEUE, ModelSpec
from workers.parking import ParkedJob
from workers.redis_calls import best_effort, essential
from workers.settings import settings

log = logging.getLogger(__name__)

#: The task state a caller sees while its job is parked.
PARKED = "PARKED"


def degrade(task: Task, spec: ModelSpec, job: Job, reason: str) -> NoReturn:
    """Hands the job to the model's fallback task, under the same task id."""
    sig = task.app.signature(spec.fallback_task, args=(job.model_dump(mode="json"),), kwargs={"reason": reason},
                             queue=FALLBACK_QUEUE)
    task.replace(sig)
    raise Ignore()  # replace() raises this itself; kept for the type checker


def park(task: Task, spec: ModelSpec, job: Job, reason: str, *, fallback_failed: bool = False) -> NoReturn:
    """Keeps the job until its model recovers. The caller sees the task in state PARKED,
    with the reason, until the answer arrives under the same id."""
    entry = ParkedJob(task_id=task.request.id, model=spec.name, job=job.model_dump(mode="json"),
                      reason=reason, fallback_failed=fallback_failed)
    essential("parking a job", lambda: runtime.parking().park(entry))
    best_effort("marking a job parked", lambda: runtime.ledger().begin(task.request.id, "parked"), None)
    best_effort("marking a job PARKED",
                lambda: task.update_state(state=PARKED, meta={"reason": reason, "parked_at": entry.parked_at}), None)
    log.info("parked %s[%s]: %s", spec.name, task.request.id, reason)
    raise Ignore()


def back_to_queue(task: Task, spec: ModelSpec, job: Job, *, head: bool = False) -> NoReturn:
    """Puts the job back at the end of its model's queue, under its task id: it waits there
    (paused) until a probe permit or the recovery takes it. ``head``: ahead of every job
    waiting (the highest priority), for a job that has waited its turn already."""
    options = {"priority": broker_priority(MAX_PRIORITY, settings())} if head else {}
    essential("requeueing a job", lambda: task.app.send_task(spec.task, args=[job.model_dump(mode="json")],
                                                             task_id=task.request.id, queue=spec.queue, **options))
    raise Ignore()


def drop_if_cancelled(task: Task, spec: ModelSpec) -> None:
    """A job cancelled while it waited is never run: its message is dropped here (the
    caller already reads it as cancelled). Without Redis, it runs."""
    if not best_effort("reading the job's record", lambda: runtime.ledger().begin(task.request.id), True):
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
