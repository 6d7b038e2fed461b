"""What the ``fallback`` queue's CPU workers answer when a model cannot.

Every model first tries the result cache (the same input answered before by the model:
``served_by: cache``). Then its own degraded path:

- ocr: the same PP-OCR mobile models on CPU, on an image shrunk to
  ``fallback_ocr_max_side``, within ``fallback_ocr_budget`` seconds (``fallback:cpu-ocr``);
  if that fails, key fields by rules from the caller's ``text_hint`` option
  (``fallback:rules``);
- sentiment: ``neutral`` with score 0.5 (``fallback:neutral``);
- ner: names from the training corpus's gazetteer, and patterns for dates, times and
  numbers (``fallback:gazetteer``);
- echo: a neutral empty answer (``fallback:neutral``).

When even that cannot answer, the job is parked and sent back to its model when the
breaker closes: never lost. Every answer here says ``degraded: true`` and why.

A fault switch named ``fallback.<model>`` makes a model's degraded path fail (for OCR, the
CPU model; the rules after it still answer from a hint), so that drills can exercise
parking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task

from breaker import InputError
from workers import runtime
from workers.answers import answer
from workers.errors import JobFailed
from workers.fields import extract_key_fields
from workers.handoffs import drop_if_cancelled, park, requeue_when_store_down
from workers.inputs import load_input, parse_job
from workers.jobs import MAX_RERUNS, Job, one_or_many
from workers.models import ModelSpec
from workers.settings import settings
from workers.redis_calls import best_effort, essential
from workers.timeouts import call_timeout

log = logging.getLogger(__name__)


class CannotAnswer(Exception):
    """The degraded path has nothing to give for this job."""


def _ocr(spec: ModelSpec, job: Job) -> tuple[dict[str, Any], str]:
    problems = []
    image = essential("loading the job's input", lambda: load_input(spec, job))
    try:
        with call_timeout(settings().fallback_ocr_budget):
            runtime.faults().inject(f"fallback.{spec.name}")  # the CPU model's switch; the rules have none
            return runtime.runner(spec.name, fallback=True).run(image, job.options), "cpu-ocr"
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the CPU path falls through to rules
        problems.append(f"cpu-ocr: {type(exc).__name__}: {exc}")
        log.warning("OCR CPU fallback failed: %s", problems[-1])
    hint = str(job.options.get("text_hint") or "")
    if hint.strip():
        return {"lines": [], "text": hint, "key_fields": extract_key_fields(hint)}, "rules"
    raise CannotAnswer("; ".join(problems + ["no text_hint for the rules"]))


def _texts(spec: ModelSpec, job: Job) -> list[str]:
    return essential("loading the job's input", lambda: load_input(spec, job))


def _neutral_echo(spec: ModelSpec, job: Job) -> tuple[dict[str, Any], str]:
    runtime.faults().inject(f"fallback.{spec.name}")
    return one_or_many(job, {"items": [{"text": "", "length": 0} for _ in _texts(spec, job)]}), "neutral"


def _neutral_sentiment(spec: ModelSpec, job: Job) -> tuple[dict[str, Any], str]:
    runtime.faults().inject(f"fallback.{spec.name}")
    neutral = {"label": "neutral", "score": 0.5, "positive": 0.5}
    return one_or_many(job, {"items": [dict(neutral) for _ in _texts(spec, job)]}), "neutral"


def _ner_rules(spec: ModelSpec, job: Job) -> tuple[dict[str, Any], str]:
    runtime.faults().inject(f"fallback.{spec.name}")
    return one_or_many(job, runtime.runner(spec.name, fallback=True).run(_texts(spec, job), job.options)), "gazetteer"


DEGRADED_PATHS: dict[str, Callable[[ModelSpec, Job], tuple[dict[str, Any], str]]] = {
    "ocr": _ocr,
    "sentiment": _neutral_sentiment,
    "ner": _ner_rules,
    "echo": _neutral_echo,
}


@requeue_when_store_down
def run_fallback(task: Task, spec: ModelSpec, raw_job: Any, reason: str) -> dict[str, Any]:
    """Answers a job without its model: from the result cache, else by the model's degraded
    path (``DEGRADED_PATHS``); a job no path can answer is parked, never dropped.

    Parameters:
      task: the running fallback task (its id is the job's).
      spec: the job's model.
      raw_job: the job as the message carried it.
      reason: why the model did not answer (shown in the result).
    """
    started = time.time()
    job = parse_job(raw_job, spec)
    drop_if_cancelled(task, spec)
    state = runtime.breakers().get(spec.name).state
    cached = best_effort("reading the result cache",
                         lambda: runtime.result_cache().get(spec.name, job.content_hash), None)
    if cached is not None:
        return answer(task, spec, job, cached, served_by="cache", started=started, reason=reason, state=state)
    try:
        output, how = DEGRADED_PATHS[spec.name](spec, job)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - CannotAnswer or a broken degraded path: park, never drop
        if job.reruns >= MAX_RERUNS:
            raise JobFailed(
                f"{spec.name} failed on this job after {job.reruns} reruns and the fallback could not answer "
                f"either ({reason}; {exc})"
            ) from None
        park(task, spec, job, f"{reason}; fallback could not answer ({exc})", fallback_failed=True)
    return answer(task, spec, job, output, served_by=f"fallback:{how}", started=started, reason=reason, state=state)
