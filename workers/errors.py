"""Errors a job's caller sees, under the breaker's :class:`~breaker.errors.FuseboxError`.

The workers' part of the tree::

    FuseboxError
    ├── InputError (breaker)     the caller's problem, never counted against a model
    │   ├── InvalidJob
    │   └── InvalidInput
    │       └── PayloadMissing
    ├── UnknownModel             no model of that name (also a KeyError)
    ├── StoreDown                Redis stayed away longer than a job can wait
    ├── ModelMismatch, CorpusMissing, LexiconMissing   (workers/nlp) a model's files or data
    └── JobFailed                neither the model nor its fallback could answer
"""

from __future__ import annotations

from collections.abc import Iterable

from breaker.errors import FuseboxError, InputError


class InvalidJob(InputError):
    """The job itself is malformed (missing payload, wrong types, unknown options)."""


class InvalidInput(InputError):
    """The job's input can never succeed (an empty, truncated, oversized or non-image file,
    an empty or over-long text...)."""


class PayloadMissing(InvalidInput):
    """The job's uploaded payload is gone from the store (expired, or never uploaded)."""


class UnknownModel(FuseboxError, KeyError):
    """No model of that name is served.

    A ``KeyError`` for the callers that look models up like a mapping, with the plain
    message as its ``str`` (a bare ``KeyError`` quotes its message as a repr).

    Parameters:
      name: the name asked for.
      known: the names of the models that are served.
    """

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(name, self.known)  # both in args: the exception survives pickling

    def __str__(self) -> str:
        return f"unknown model {self.name!r}; known: {', '.join(self.known)}"


class StoreDown(FuseboxError):
    """Redis stayed unreachable for longer than a job can wait on it.

    Not a :class:`~breaker.errors.StoreUnavailable`: that one is an operator action on the
    breaker store (a 503 over HTTP); this one is a job's own data (its payload, its place
    in the parking lot), and the job path turns it into a requeue (``workers/handoffs.py``).
    """


class JobFailed(FuseboxError):
    """Neither the model nor its fallback could answer this job, after every retry."""
