"""What happens to a job because of the device it landed on.

- A job taken by a process whose device is ejected is not run there: it goes back to the
  head of its model's queue, under its id, for a healthy device (a message the worker had
  reserved or prefetched before the pause: Celery keeps those after ``cancel_consumer``,
  celery#2564). The first job after the ejection time is the device's probe.
- A job whose call failed on a device that took the blame goes back the same way, at most
  ``FUSEBOX_DEVICE_RETRIES`` times and within its deadline; the fallback answers it only
  when no healthy device remains, or its retries or deadline are spent. A device fault
  also recycles the process: a CUDA context that saw an illegal access is unusable.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import NoReturn

from celery import Task

from workers import runtime
from workers.devices.identity import this_device
from workers.devices.tracker import CallContext
from workers.gpu import request_recycle
from workers.handoffs import back_to_queue, degrade
from workers.jobs import Job
from workers.models import ModelSpec
from workers.settings import settings

log = logging.getLogger(__name__)


def worker_name(task: Task) -> str:
    """The Celery node name of the worker running ``task`` (``host:pid`` outside one)."""
    return str(task.request.hostname or runtime.worker_id())


@lru_cache(maxsize=4)
def _device(worker: str) -> str:
    return this_device(worker, settings().device)


def device_of(task: Task) -> str:
    """The device the process running ``task`` calls its models on."""
    return _device(worker_name(task))


def admit_here(task: Task, spec: ModelSpec, job: Job) -> bool:
    """Whether this job is its device's probe; a job that must not run here is handed on
    (back to the queue's head, or the fallback when no healthy device remains)."""
    gate = runtime.device_tracker().gate(spec.name, device_of(task), task.request.id, settings().hard_time_limit)
    if gate == "ejected":
        if runtime.device_tracker().healthy_elsewhere(spec.name):
            log.info("%s[%s] not run on ejected device %s: back to the queue", spec.name, task.request.id,
                     device_of(task))
            back_to_queue(task, spec, job, head=True)
        degrade(task, spec, job, f"no healthy device for {spec.name}")
    return gate == "probe"


def run_elsewhere(task: Task, spec: ModelSpec, job: Job, ctx: CallContext, exc: BaseException) -> NoReturn:
    """A job whose call failed on a device that took the blame (see the module)."""
    if ctx.fault:
        request_recycle(f"device fault on {ctx.device}: {type(exc).__name__}: {exc}")
    why = f"device {ctx.device} ejected ({ctx.blamed}): {type(exc).__name__}: {exc}"
    tracker = runtime.device_tracker()
    if (job.device_retries < tracker.rules.retries and not job.deadline_passed()
            and tracker.healthy_elsewhere(spec.name)):
        log.info("%s[%s] back to the queue for another device: %s", spec.name, task.request.id, why)
        back_to_queue(task, spec, job.model_copy(update={"device_retries": job.device_retries + 1}), head=True)
    degrade(task, spec, job, why)
