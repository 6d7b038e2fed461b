"""The Celery tasks: for each model, ``fusebox.<model>`` on its own queue and
``fusebox.fallback.<model>`` on the ``fallback`` queue. Both take the same job, so that a
job can be handed from one to the other under its task id (``Task.replace``, the deadline
sweeper, the producer's routing)."""

from __future__ import annotations

from typing import Any

from celery import Task

from breaker import InputError
from workers.app import app
from workers.fallbacks import run_fallback
from workers.models import MODELS, ModelSpec
from workers.pipeline import run_model_job
from workers.settings import settings


class ModelTask(Task):
    """Guarded model task: late acks, redelivered when its worker process dies, hard time
    limit answered from the fallback (workers.request)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    throws = (InputError,)  # the caller's error: logged without a traceback
    Request = "workers.request:GuardedRequest"
    fusebox_model: str | None = None


class FallbackTask(Task):
    """Base of the ``fusebox.fallback.<model>`` tasks: late acks, a lost worker's job redelivered."""
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    throws = (InputError,)


def _register(spec: ModelSpec) -> None:
    hard = settings().hard_time_limit

    @app.task(name=spec.task, bind=True, base=ModelTask, fusebox_model=spec.name, time_limit=hard,
              soft_time_limit=max(hard - 5, 1))
    def model_task(self: Task, job: dict[str, Any]) -> dict[str, Any]:
        return run_model_job(self, spec, job)

    @app.task(name=spec.fallback_task, bind=True, base=FallbackTask, time_limit=hard,
              soft_time_limit=max(hard - 5, 1))
    def fallback_task(self: Task, job: dict[str, Any], reason: str = "fallback requested") -> dict[str, Any]:
        return run_fallback(self, spec, job, reason)


for _spec in MODELS.values():
    _register(_spec)
