"""The workers' app plus one task for the throughput baseline: echo without the breaker.

    celery -A benchmarks.celery_app worker -Q echo,bench
"""

from __future__ import annotations

from typing import Any

from celery import Task

from workers import app
from workers import runtime
from workers.answers import answer
from workers.cache import model_version
from workers.inputs import load_input, parse_job
from workers.models import MODELS


@app.task(name="bench.echo_unguarded", bind=True, acks_late=True)
def echo_unguarded(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    """What fusebox.echo does, minus the breaker: parse, validate, run, cache, answer."""
    import time

    spec = MODELS["echo"]
    started = time.time()
    parsed = parse_job(job, spec)
    output = runtime.runner("echo").run(load_input(spec, parsed), parsed.options)
    runtime.result_cache().put(spec.name, model_version(spec.name), parsed.content_hash, output)
    return answer(self, spec, parsed, output, served_by="model", started=started)


__all__ = ["app"]
