"""The answer a job's caller gets, from the model, the cache or a fallback."""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from breaker import State
from workers import runtime, tracing
from workers.jobs import Job, JobResult, Timings
from workers.models import ModelSpec


def answer(
    task: Task, spec: ModelSpec, job: Job, output: dict[str, Any], *, served_by: str, started: float,
    reason: str | None = None, state: State | None = None,
) -> dict[str, Any]:
    """The job's result as the task returns it, counted in the job statistics.

    Parameters:
      task: the running task (its id is the job's).
      spec: the job's model.
      job: the job.
      output: what the model, cache or fallback answered.
      served_by: ``model``, ``cache`` or ``fallback:<how>``; anything but ``model`` is degraded.
      started: Unix time this task started on the job.
      reason: why the answer is degraded (or how a bypass got it).
      state: the model's breaker state when the job was decided.
    """
    now = time.time()
    total_ms = round((now - job.submitted_at) * 1000, 1)
    runtime.job_stats().answered(spec.name, served_by, total_ms)
    tracing.note(served_by=served_by, degraded=served_by != "model")
    return JobResult(
        job_id=task.request.id,
        model=spec.name,
        degraded=served_by != "model",
        served_by=served_by,
        reason=reason,
        output=output,
        worker=runtime.worker_id(),
        breaker_state=state,
        timings=Timings(
            queued_ms=round((started - job.submitted_at) * 1000, 1),
            run_ms=round((now - started) * 1000, 1),
            total_ms=total_ms,
        ),
    ).model_dump(mode="json")
