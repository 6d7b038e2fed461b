"""Validating a job and loading its input, before any breaker is asked."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from workers import runtime
from workers.errors import InvalidInput, InvalidJob
from workers.images import decode_image
from workers.jobs import Job
from workers.models import ModelSpec
from workers.settings import settings


#: The longest deadline a job may ask for, in seconds from submission: a job's uploaded
#: image is kept for FUSEBOX_PAYLOAD_TTL (7 days by default), so a later deadline could
#: never be met, and a larger figure is a unit mistake (milliseconds) rather than a wish.
MAX_DEADLINE_SECONDS = 7 * 24 * 3600.0


def check_deadline(seconds: Any) -> float:
    """A job's deadline (seconds from now), checked before anything is stored.

    Parameters:
      seconds: what the caller gave: a number of seconds (bool, NaN, infinities refused).
    Raises:
      InvalidJob: not a number, not finite (NaN, inf), not positive, or longer than
        MAX_DEADLINE_SECONDS. NaN passes a plain ``<= 0`` test, so it is named first.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidJob(f"deadline must be a number of seconds, got {type(seconds).__name__}")
    value = float(seconds)
    if not math.isfinite(value):
        raise InvalidJob(f"deadline must be a finite number of seconds, got {value}")
    if value <= 0:
        raise InvalidJob(f"deadline must be a positive number of seconds, got {value:g}")
    if value > MAX_DEADLINE_SECONDS:
        raise InvalidJob(f"deadline of {value:g} s is longer than the limit of {MAX_DEADLINE_SECONDS:.0f} s (7 days)")
    return value


def first_error(exc: Exception, whole: str = "") -> str:
    """The first problem a validation error reports, as ``where: what``: one line for a
    user, whichever side (worker, CLI, HTTP) refused the value.

    Parameters:
      exc: a pydantic ValidationError (its first error is told), or any other error (its
        text is).
      whole: the location to name when the problem concerns the whole object (pydantic
        gives it an empty location).
    """
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    first = errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}"


#: How deeply a job's ``options`` may nest: every model's options are flat values or small
#: lists; 500 levels made the job's hashing and JSON fail with a 500 after the upload was stored.
MAX_OPTIONS_DEPTH = 8


def check_options(options: Any, depth: int = 0) -> None:
    """Raises InvalidJob when ``options`` nests deeper than MAX_OPTIONS_DEPTH (checked
    iteratively in effect: the recursion stops at the limit)."""
    if depth > MAX_OPTIONS_DEPTH:
        raise InvalidJob(f"options nest deeper than {MAX_OPTIONS_DEPTH} levels")
    if isinstance(options, dict):
        for value in options.values():
            check_options(value, depth + 1)
    elif isinstance(options, list):
        for value in options:
            check_options(value, depth + 1)


def parse_job(raw: Any, spec: ModelSpec) -> Job:
    """The job in a task message, checked against its model.

    Raises:
      InvalidJob: not a job, malformed, for another model, wrong input kind, unknown options.
    """
    if not isinstance(raw, dict):
        raise InvalidJob(f"a job is a JSON object, got {type(raw).__name__}")
    try:
        job = Job.model_validate(raw)
    except ValidationError as exc:
        raise InvalidJob(f"invalid job ({first_error(exc, whole='job')})") from None
    except ValueError as exc:
        raise InvalidJob(f"invalid job ({exc})") from None
    if job.deadline is not None and not math.isfinite(job.deadline):
        raise InvalidJob(f"invalid job (deadline: not a finite time, got {job.deadline})")
    if job.model != spec.name:
        raise InvalidJob(f"job for model {job.model!r} sent to {spec.name!r}")
    if spec.input == "image" and job.payload is None:
        raise InvalidJob(f"{spec.name} takes an uploaded image (`payload`), not text")
    if spec.input == "text" and job.payload is not None:
        raise InvalidJob(f"{spec.name} takes `text` or `texts`, not an uploaded payload")
    if spec.input == "image" and job.texts is not None:
        raise InvalidJob(f"{spec.name} takes an uploaded image (`payload`), not texts")
    if job.texts is not None and len(job.texts) > spec.max_batch:
        raise InvalidJob(f"{spec.name} takes at most {spec.max_batch} texts per job, got {len(job.texts)}")
    unknown = set(job.options) - set(spec.options)
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise InvalidJob(f"unknown option(s) for {spec.name}: {', '.join(sorted(unknown))} (allowed: {allowed})")
    return job


def check_text(text: str, max_chars: int) -> str:
    """A text input that can be processed.

    Raises:
      InvalidInput: blank, too long, or not encodable as UTF-8 (lone surrogates from a
        broken decoder upstream).
    """
    if not text.strip():
        raise InvalidInput("empty text")
    if len(text) > max_chars:
        raise InvalidInput(f"text too long: {len(text)} characters > limit of {max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"text is not valid Unicode (wrong encoding upstream?): {exc.reason} at {exc.start}") from None
    if "\x00" in text:
        raise InvalidInput("text contains NUL characters (binary data sent as text?)")
    return text


def load_input(spec: ModelSpec, job: Job) -> Any:
    """The model's input: a decoded image, or the list of checked texts."""
    if spec.input == "image":
        assert job.payload is not None
        s = settings()
        return decode_image(runtime.payloads().get(job.payload), max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
    texts = [job.text] if job.text is not None else list(job.texts or [])
    checked = []
    for i, text in enumerate(texts):
        try:
            checked.append(check_text(text, spec.max_text_chars))
        except InvalidInput as exc:
            raise InvalidInput(f"texts[{i}]: {exc}" if job.texts is not None else str(exc)) from None
    return checked
