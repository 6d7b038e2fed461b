"""How the workers' breakers count a model call's exceptions (workers.outcomes)."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from breaker import CallTimeout, Outcome
from workers.errors import InvalidInput, PayloadMissing
from workers.faults import InjectedFault
from workers.outcomes import MODEL_CALL_OUTCOMES, DeviceAwareClassifier


@pytest.mark.parametrize(("exc", "outcome"), [
    (SoftTimeLimitExceeded(), Outcome.TIMEOUT),
    (CallTimeout("model call exceeded its 2s timeout"), Outcome.TIMEOUT),
    (InvalidInput("empty image"), Outcome.IGNORED),
    (PayloadMissing("expired"), Outcome.IGNORED),
    (InjectedFault("drill"), Outcome.FAILURE),
    (MemoryError("out of memory"), Outcome.FAILURE),
    (TimeoutError("the model's own socket"), Outcome.FAILURE),  # not our timer: a failure, as before
    (KeyboardInterrupt(), Outcome.IGNORED),
    (SystemExit(1), Outcome.IGNORED),
])
def test_model_call_outcomes(exc: BaseException, outcome: Outcome) -> None:
    assert MODEL_CALL_OUTCOMES.classify(exc) is outcome


def test_the_workers_breakers_use_them() -> None:
    from workers import runtime

    breakers = runtime.breakers.__wrapped__()  # a real registry, past the process's cached one
    try:
        for name in ("echo", "ocr"):
            classifier = breakers.get(name).classifier
            # the same classes as MODEL_CALL_OUTCOMES, judged by this process's device tracker
            assert isinstance(classifier, DeviceAwareClassifier) and classifier.judge == runtime.device_tracker().judge
            assert (classifier.ignored, classifier.timeouts) == (MODEL_CALL_OUTCOMES.ignored,
                                                                 MODEL_CALL_OUTCOMES.timeouts)
    finally:
        breakers.close()
