"""How an exception from a model call counts for the model's breaker (the workers'
:class:`~breaker.ExceptionClassifier`, given to their breakers in workers.runtime)."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from breaker import CallTimeout, ExceptionClassifier, InputError

#: A caller's bad input (every workers.errors class is an InputError) is IGNORED; the call's
#: own timer (workers.timeouts) and Celery's soft time limit are TIMEOUTs. A TimeoutError
#: the model raises itself is a FAILURE like any other error, and a BaseException that is
#: not an Exception (the process stopping) is IGNORED.
MODEL_CALL_OUTCOMES = ExceptionClassifier(ignored=(InputError,), timeouts=(CallTimeout, SoftTimeLimitExceeded))
