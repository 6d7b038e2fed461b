"""Errors a job's caller sees. Each is a breaker ``InputError``: the caller's problem, never
counted against a model."""

from __future__ import annotations

from breaker.errors import InputError


class InvalidJob(InputError):
    """The job itself is malformed (missing payload, wrong types, unknown options)."""


class InvalidInput(InputError):
    """The job's input can never succeed (an empty, truncated, oversized or non-image file,
    an empty or over-long text...)."""


class PayloadMissing(InvalidInput):
    """The job's uploaded payload is gone from the store (expired, or never uploaded)."""


class JobFailed(Exception):
    """Neither the model nor its fallback could answer this job, after every retry."""
