"""The Python client: submit jobs, get job handles, wait for typed results.

    from api.client import FuseboxClient

    client = FuseboxClient()                       # FUSEBOX_* environment
    job = client.submit_ocr("invoice.png", deadline=30)
    result = job.get(timeout=60)                   # JobResult: degraded? served_by? output
    print(result.output["key_fields"])

Input is validated here, before anything is enqueued: a bad file raises InvalidInput at
once and costs the fleet nothing. Routing happens at submit time: when the model's breaker
is OPEN or FORCED_OPEN the job goes straight to the fallback queue (its answer is
``degraded``), unless it asks to ``wait`` for the model.

Every accepted job is recorded (workers.lifecycle), so that :meth:`FuseboxClient.status`
answers "unknown job" for an id fusebox never accepted, and :meth:`FuseboxClient.cancel`
can cancel a queued or parked job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from celery import Celery
from celery.result import AsyncResult

from breaker import Breakers, InputError, State
from breaker.connection import redis_client
from workers.app import make_app
from workers.errors import InvalidInput, InvalidJob, UnknownModel
from workers.images import decode_image
from workers.inputs import check_deadline, check_options, check_text, parse_job
from workers.jobs import INTERACTIVE_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Job, JobResult
from workers.lifecycle import CancelOutcome, JobLedger
from workers.models import FALLBACK_QUEUE, MODELS, spec_for
from workers.parking import ParkingLot
from workers.payloads import PayloadStore
from workers.deadlines import DeadlineIndex
from workers.settings import Settings
from workers.redis_calls import essential

Route = Literal["auto", "model", "fallback"]
FINISHED = ("SUCCESS", "FAILURE")


class UnknownJob(LookupError):
    """An id fusebox never accepted, or whose record (kept as long as results) expired."""


class CannotCancel(RuntimeError):
    """The job already started or finished: only a queued or parked job can be cancelled.

    Parameters:
      status: the job's status (``STARTED``, ``SUCCESS``, ``FAILURE``...).
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class JobHandle:
    """A submitted job.

    Parameters:
      id: the task id; the answer arrives under it whoever serves it.
      model: the model it was submitted for.
      routed_to: ``model`` or ``fallback``, as decided at submission.
    """

    id: str
    model: str
    routed_to: Literal["model", "fallback"]
    _result: AsyncResult

    @property
    def status(self) -> str:
        """PENDING (queued), STARTED, PARKED (waiting for its model to recover), SUCCESS,
        FAILURE, CANCELLED."""
        return public_status(str(self._result.state))

    def ready(self) -> bool:
        return bool(self._result.ready())

    def get(self, timeout: float | None = None) -> JobResult:
        """Waits for the answer. Raises the job's error (InvalidInput, InvalidJob,
        JobFailed...) when it has one, and celery's TimeoutError after ``timeout``."""
        return JobResult.model_validate(self._result.get(timeout=timeout, interval=0.05))


@dataclass
class Submission:
    """One input of :meth:`FuseboxClient.submit_batch`: its job, or why it was refused.

    Parameters:
      index: its position in the inputs.
      handle: the job, when the input was accepted.
      error: the input error (``InvalidInput`` / ``InvalidJob`` message) when it was not.
    """

    index: int
    handle: JobHandle | None = None
    error: InputError | None = None

    @property
    def ok(self) -> bool:
        return self.handle is not None


class FuseboxClient:
    """Parameters:
      settings: where the broker, results and breakers are (``FUSEBOX_*`` by default).
      app: a Celery app to publish with (one made from ``settings`` by default).
      breakers: for routing at submit time (made from ``settings`` by default).
    """

    def __init__(
        self, settings: Settings | None = None, app: Celery | None = None, breakers: Breakers | None = None
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._owns_app = app is None
        self.app = app or make_app(self.settings)
        self.breakers = breakers or Breakers.from_url(
            self.settings.redis_url,
            settings=self.settings.breaker_settings(),
            policies={name: spec.policy for name, spec in MODELS.items()},
        )
        self._redis = redis_client(self.settings.redis_url, 5, fail_fast=False)
        self.payloads = PayloadStore(self._redis, self.settings.key_prefix, self.settings.payload_ttl)
        self.deadlines = DeadlineIndex(self._redis, self.settings.key_prefix)
        self.ledger = JobLedger(self._redis, self.settings.key_prefix)

    def close(self) -> None:
        self.breakers.close()
        self._redis.close()
        if self._owns_app:
            self.app.close()

    def __enter__(self) -> FuseboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ------------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        *,
        image: bytes | str | Path | None = None,
        text: str | bytes | None = None,
        texts: list[str] | None = None,
        options: dict[str, Any] | None = None,
        deadline: float | None = None,
        wait: bool = False,
        route: Route = "auto",
        task_id: str | None = None,
        bypass: str | None = None,
        priority: int = INTERACTIVE_PRIORITY,
    ) -> JobHandle:
        """Validates and enqueues one job.

        Parameters:
          model: ``ocr``, ``echo``, ...
          image: bytes or a file path (image models).
          text: a str, or UTF-8 bytes (text models).
          texts: several texts answered together in one model call (text models); the
            result's output is then ``{"items": [...]}``, in order.
          options: model options (``ocr``: ``text_hint``).
          deadline: seconds from now after which a degraded answer is preferred to waiting.
          wait: if the model's breaker refuses the job, wait for the model instead of
            answering from the fallback (until ``deadline``, if any).
          route: ``auto`` (by breaker state), or force ``model`` / ``fallback``.
          task_id: reuse an id (re-submitting the same job), else a new one.
          bypass: this caller's name, if the model's breaker policy whitelists it in
            ``bypass_callers``: the job then goes past the breaker, to the model.
          priority: 0 (least urgent) to 9 (most urgent); a queued job of higher priority
            is taken first, on Redis and on RabbitMQ. Interactive jobs default to 6, batch
            submissions (``fusebox submit``) to 3.
        Raises:
          InvalidInput, InvalidJob: before anything is enqueued.
        """
        try:
            spec = spec_for(model)
        except UnknownModel as exc:
            raise InvalidJob(str(exc)) from None
        if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidJob(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {priority!r}")
        check_options(options or {})  # before anything is stored
        job_kwargs: dict[str, Any] = {"model": model, "options": options or {}, "wait": wait, "priority": priority}
        if bypass is not None:
            if bypass not in self.breakers.get(model).policy.bypass_callers:
                raise InvalidJob(f"caller {bypass!r} may not bypass the {model} breaker (not in its bypass_callers)")
            job_kwargs["bypass"] = bypass
        if deadline is not None:
            # Checked before any payload is stored: NaN passes `<= 0` and broke Redis later.
            job_kwargs["deadline"] = time.time() + check_deadline(deadline)
        if spec.input == "image":
            if image is None or text is not None or texts is not None:
                raise InvalidJob(f"{model} takes an image (bytes or a path)")
            data = self._read(image)
            decode_image(data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels)
            job_kwargs["payload"] = self.payloads.put(data)
        else:
            if image is not None or (text is None) == (texts is None):
                raise InvalidJob(f"{model} takes `text` or `texts`")
            if texts is not None:
                job_kwargs["texts"] = [self._text(t, spec.max_text_chars, f"texts[{i}]: ") for i, t in enumerate(texts)]
            else:
                assert text is not None
                job_kwargs["text"] = self._text(text, spec.max_text_chars)
        job = parse_job(job_kwargs, spec)  # the workers' own checks, before anything is sent
        return self._send(spec.name, job, route, task_id or str(uuid.uuid4()))

    def submit_ocr(self, image: bytes | str | Path, **kwargs: Any) -> JobHandle:
        return self.submit("ocr", image=image, **kwargs)

    def submit_sentiment(self, text: str | list[str], **kwargs: Any) -> JobHandle:
        """One review (or a list, answered together) -> positive / negative with a score."""
        return self.submit("sentiment", **({"texts": text} if isinstance(text, list) else {"text": text}), **kwargs)

    def submit_ner(self, text: str | list[str], **kwargs: Any) -> JobHandle:
        """One text (or a list) -> persons, places, organisations and times."""
        return self.submit("ner", **({"texts": text} if isinstance(text, list) else {"text": text}), **kwargs)

    def submit_nlp(self, text: str | list[str], model: str = "sentiment", **kwargs: Any) -> JobHandle:
        """A text job for any NLP model (``sentiment``, ``ner``), chosen by ``model``."""
        return self.submit(model, **({"texts": text} if isinstance(text, list) else {"text": text}), **kwargs)

    def submit_echo(self, text: str, **kwargs: Any) -> JobHandle:
        return self.submit("echo", text=text, **kwargs)

    def submit_input(self, model: str, content: bytes | str | Path, **kwargs: Any) -> JobHandle:
        """One job for one input, passed as the model takes it: an image for image models,
        a text for text models. What :meth:`submit_batch` and ``fusebox submit`` submit
        each input with.

        Parameters:
          model: ``ocr``, ``sentiment``, ...
          content: image bytes or path (image models), or a text (text models).
          kwargs: :meth:`submit`'s options (``deadline``, ``priority``...).
        Raises:
          InvalidInput, InvalidJob: before anything is enqueued.
        """
        # An unknown model is left to submit(), which refuses it as InvalidJob.
        image_model = spec_for(model).input == "image" if model in MODELS else True
        return self.submit(model, **({"image": content} if image_model else {"text": content}), **kwargs)

    def submit_batch(self, model: str, inputs: Iterable[bytes | str | Path], **kwargs: Any) -> list[Submission]:
        """One job per input (images for image models, texts for text models), with the
        same options. A bad input does not stop the batch: its Submission carries the error
        and every other input is still submitted.

        Parameters:
          model: ``ocr``, ``sentiment``, ...
          inputs: the inputs, in order.
          kwargs: :meth:`submit`'s options, for every job.
        """
        submissions = []
        for index, content in enumerate(inputs):
            try:
                handle = self.submit_input(model, content, **kwargs)
            except InputError as exc:
                submissions.append(Submission(index, error=exc))
            else:
                submissions.append(Submission(index, handle=handle))
        return submissions

    @staticmethod
    def _text(text: str | bytes, max_chars: int, where: str = "") -> str:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{where}text is not UTF-8: {exc.reason} at byte {exc.start}") from None
        if not isinstance(text, str):
            raise InvalidJob(f"{where}text must be a string, got {type(text).__name__}")
        try:
            return check_text(text, max_chars)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}{exc}") from None

    def _send(self, model: str, job: Job, route: Route, task_id: str) -> JobHandle:
        spec = spec_for(model)
        to_fallback = route == "fallback"
        reason = "fallback requested by the caller"
        if route == "auto" and not job.wait:
            state = self.breakers.get(model).state
            if state in (State.OPEN, State.FORCED_OPEN):
                to_fallback, reason = True, f"breaker {state.value} at submission"
        body = job.model_dump(mode="json")
        # Recorded before publishing: a worker may take the job at once. Retried through a
        # Redis restart, as publishing is. (The message's priority comes from the job's:
        # workers.app.FuseboxCelery.)
        essential("recording the job", lambda: self.ledger.record(task_id, model, "fallback" if to_fallback else "model"))
        if job.bypass is not None:
            result = self.app.send_task(spec.task, args=[body], task_id=task_id, queue=spec.bypass_queue)
            return JobHandle(id=task_id, model=model, routed_to="model", _result=result)
        if to_fallback:
            result = self.app.send_task(spec.fallback_task, args=[body], kwargs={"reason": reason},
                                        task_id=task_id, queue=FALLBACK_QUEUE)
        else:
            if job.deadline is not None:
                # Indexed before publishing: a worker claims the entry when the job starts.
                deadline_at = job.deadline
                essential("indexing the job's deadline", lambda: self.deadlines.add(model, task_id, deadline_at, body))
            result = self.app.send_task(spec.task, args=[body], task_id=task_id, queue=spec.queue)
        return JobHandle(id=task_id, model=model, routed_to="fallback" if to_fallback else "model", _result=result)

    def _read(self, image: bytes | str | Path) -> bytes:
        """An image's bytes; a path is read as ``fusebox submit`` reads it (a regular file,
        no symbolic link followed, its size checked before a byte is read)."""
        if isinstance(image, bytes):
            return image
        from api.batch_inputs import image_item

        if Path(image).is_dir():
            raise InvalidInput(f"is a directory, not an image: {image}")
        item = image_item(Path(image), self.settings.max_image_bytes)
        if item.error is not None:
            raise InvalidInput(f"{image}: {item.error}")
        assert isinstance(item.content, bytes)
        return item.content

    def handle(self, task_id: str, model: str) -> JobHandle:
        """A handle on a job submitted earlier (by id)."""
        return JobHandle(id=task_id, model=model, routed_to="model", _result=AsyncResult(task_id, app=self.app))

    # -- job lifecycle -----------------------------------------------------------------------------

    def status(self, task_id: str) -> str:
        """A job's status (see :attr:`JobHandle.status`).

        Raises:
          UnknownJob: fusebox never accepted this id, or its record expired.
        """
        state = public_status(str(AsyncResult(task_id, app=self.app).state))
        if state == "PENDING" and self.ledger.get(task_id) is None:
            raise UnknownJob(f"unknown job {task_id!r}: never accepted here, or expired")
        return state

    def cancel(self, task_id: str, reason: str = "cancelled by the caller") -> CancelOutcome:
        """Cancels a queued or parked job: it is never run, and reads CANCELLED (its
        ``get()`` raises celery's TaskRevokedError). Answers ``cancelled``, or ``already
        cancelled``.

        Raises:
          UnknownJob: fusebox never accepted this id, or its record expired.
          CannotCancel: the job already started or finished.
        """
        state = public_status(str(AsyncResult(task_id, app=self.app).state))
        if state == "CANCELLED":
            return "already cancelled"
        if state in FINISHED:
            raise CannotCancel(f"job {task_id} already finished ({state})", state)
        record = self.ledger.get(task_id)
        outcome = self.ledger.cancel(task_id)
        if outcome == "unknown" or record is None:
            raise UnknownJob(f"unknown job {task_id!r}: never accepted here, or expired")
        if outcome == "started":
            raise CannotCancel(f"job {task_id} already started; it cannot be cancelled", "STARTED")
        # The record now says cancelled: whichever worker takes the message drops it. What
        # follows only tidies up (and tells Celery, for Flower and `AsyncResult`).
        self.deadlines.remove(record.model, task_id)
        self._redis.hdel(ParkingLot(self._redis, self.settings.key_prefix).key(record.model), task_id)
        self.app.backend.mark_as_revoked(task_id, reason)
        self.app.control.revoke(task_id)
        return outcome


def public_status(state: str) -> str:
    """Celery's task state as fusebox names it (REVOKED is CANCELLED: fusebox revokes a
    job only when its caller cancels it)."""
    return "CANCELLED" if state == "REVOKED" else state
