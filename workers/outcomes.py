"""How an exception from a model call counts for the model's breaker (the workers'
:class:`~breaker.ExceptionClassifier`, given to their breakers in workers.runtime)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from breaker import CallTimeout, ExceptionClassifier, InputError, Outcome

#: A caller's bad input (every workers.errors class is an InputError) is IGNORED; the call's
#: own timer (workers.timeouts) and Celery's soft time limit are TIMEOUTs. A TimeoutError
#: the model raises itself is a FAILURE like any other error, and a BaseException that is
#: not an Exception (the process stopping) is IGNORED.
MODEL_CALL_OUTCOMES = ExceptionClassifier(ignored=(InputError,), timeouts=(CallTimeout, SoftTimeLimitExceeded))


@dataclass(frozen=True)
class DeviceAwareClassifier(ExceptionClassifier):
    """:data:`MODEL_CALL_OUTCOMES`, then the device's say: a failure the call's device takes
    the blame for (it is ejected for it: workers/devices/tracker.py) is IGNORED for the
    model's breaker. ``judge(exc, outcome)`` gives the final outcome."""

    judge: Callable[[BaseException, Outcome], Outcome] | None = None

    def classify(self, exc: BaseException) -> Outcome:
        outcome = super().classify(exc)
        return self.judge(exc, outcome) if self.judge is not None else outcome


def device_aware(judge: Callable[[BaseException, Outcome], Outcome]) -> DeviceAwareClassifier:
    """The workers' classifier with a process's device tracker's judgement."""
    return DeviceAwareClassifier(ignored=MODEL_CALL_OUTCOMES.ignored, timeouts=MODEL_CALL_OUTCOMES.timeouts,
                                 judge=judge)
