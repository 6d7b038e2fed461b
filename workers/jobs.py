"""What travels between producers and workers: jobs in task messages, results back.

Messages are JSON only. Images do not travel in messages: the producer stores the bytes in
Redis under their SHA-256 (:mod:`workers.payloads`) and the job names that digest, which
keeps messages small (Flower shows them; deadline sweeps scan them) and doubles as the
content hash of the result cache.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from breaker.state import State, check_name
from workers import hashing

MAX_RERUNS = 3

# Priorities, 0 (least urgent) to 9 (most urgent): interactive jobs go ahead of batches on
# both brokers (see workers.app.broker_priority).
MIN_PRIORITY, MAX_PRIORITY = 0, 9
INTERACTIVE_PRIORITY = 6
BATCH_PRIORITY = 3


class Job(BaseModel):
    """One unit of work for one model.

    Parameters:
      model: the model's name, which is also its queue's and its breaker's.
      payload: SHA-256 (hex) of the uploaded bytes, for image models.
      text: the input itself, for text models.
      texts: several inputs for a text model, answered together in one model call (the
        output is then ``{"items": [...]}``, one per text, in order).
      options: model-specific options (validated by the model).
      deadline: Unix time after which the caller prefers a degraded answer to waiting:
        a job still queued or parked then is answered by the fallback.
      wait: when the model's breaker refuses the job, park it until the model recovers
        (or its deadline passes) instead of answering from the fallback at once.
      submitted_at: Unix time of submission (for queue-time figures).
      bypass: the calling service's name, for callers the model's breaker policy lists in
        ``bypass_callers``: such a job goes past the breaker (see BreakerPolicy).
      reruns: how many times a parked job was sent back to its model. A rerun runs on the
        model whatever its deadline says; after MAX_RERUNS the job fails with a clear
        error rather than circling between a model and a fallback that both fail on it.
      device_retries: how many times the job went back to its queue because its call failed
        on a broken device (workers/devices/handoff.py); bounded by ``FUSEBOX_DEVICE_RETRIES``.
      priority: 0 (least urgent) to 9 (most urgent); a queued job of higher priority is
        taken first. Interactive submissions default to INTERACTIVE_PRIORITY, ``fusebox
        submit`` batches to BATCH_PRIORITY. The job keeps it when rerouted or rerun.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    payload: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    text: str | None = None
    texts: list[str] | None = Field(None, min_length=1, max_length=256)
    options: dict[str, Any] = Field(default_factory=dict)
    deadline: float | None = None
    wait: bool = False
    submitted_at: float = Field(default_factory=time.time)
    bypass: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    reruns: int = Field(0, ge=0)
    device_retries: int = Field(0, ge=0)
    priority: int = Field(INTERACTIVE_PRIORITY, ge=MIN_PRIORITY, le=MAX_PRIORITY)

    @model_validator(mode="after")
    def _has_input(self) -> Job:
        check_name(self.model)
        if sum(x is not None for x in (self.payload, self.text, self.texts)) != 1:
            raise ValueError("a job carries exactly one input: `payload` (uploaded bytes), `text` or `texts`")
        return self

    @property
    def content_hash(self) -> str:
        """The same input and options give the same answer (from the same model version: the
        result cache adds the model's version to its key)."""
        if self.payload is not None:
            content = self.payload
        elif self.text is not None:
            content = self.text
        else:
            content = json.dumps(self.texts, ensure_ascii=False)
        return hashing.content_hash(self.model, content, json.dumps(self.options, sort_keys=True, default=str))

    def deadline_passed(self, now: float | None = None) -> bool:
        return self.deadline is not None and not self.reruns and (now or time.time()) >= self.deadline


def one_or_many(job: Job, output: dict[str, Any]) -> dict[str, Any]:
    """A text model's output for this job: the single item of a ``text`` job, or every item
    of a ``texts`` job (runners always answer ``{"items": [...]}``)."""
    return output["items"][0] if job.text is not None else output


class Timings(BaseModel):
    """Milliseconds: waiting in queues, running, and from submission to result."""

    queued_ms: float | None = None
    run_ms: float = 0.0
    total_ms: float | None = None


class JobResult(BaseModel):
    """What every job returns, model or fallback.

    Parameters:
      job_id: the task id the caller holds.
      model: the model the job was for.
      degraded: False only when the model itself answered now.
      served_by: ``model``, ``cache`` or ``fallback:<how>`` (``fallback:cpu-ocr``,
        ``fallback:rules``, ``fallback:neutral``...).
      reason: why the answer is degraded (``breaker open``, ``deadline passed``...).
      output: the model-specific answer (see each model's output type).
      worker: ``host:pid`` that produced the answer.
      breaker_state: the model's breaker state when the job was decided.
      timings: where the time went.
    """

    job_id: str
    model: str
    degraded: bool
    served_by: str
    reason: str | None = None
    output: dict[str, Any]
    worker: str
    breaker_state: State | None = None
    timings: Timings = Field(default_factory=Timings)
