"""The guard's options, on the in-memory store: a ticket granted beforehand, the call's own
timeout, the duration the breaker is told, and the outcome the guard recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from breaker import BreakerPolicy, Breakers, CallNotPermitted, ExceptionClassifier, InputError, Outcome, State

POLICY = BreakerPolicy(minimum_calls=4, wait_in_open=0.3, permitted_calls_in_half_open=2,
                       call_timeout=0.5, max_wait_in_half_open=5.0, slow_call_duration=0.4)


class ModelTimedOut(Exception):
    """Stands for a framework's own timeout (Celery's soft time limit)."""


@pytest.fixture
def breakers() -> Iterator[Breakers]:
    b = Breakers(default_policy=POLICY)
    yield b
    b.close()


def totals(b: Breakers) -> dict[str, int]:
    b.flush()
    return dict(b.get("ocr").snapshot().totals)


def test_a_ticket_granted_beforehand_runs_without_asking_again(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    ocr.trip()
    time.sleep(0.35)
    probes = [ocr.admit(), ocr.admit()]  # every HALF_OPEN permit, handed out before the calls
    assert {t.state for t in probes} == {State.HALF_OPEN}
    with pytest.raises(CallNotPermitted):
        with ocr.guard():
            pass
    for probe in probes:
        guarded = ocr.guard(probe)
        with guarded as ticket:
            assert ticket is probe
        assert guarded.outcome is Outcome.SUCCESS
    breakers.flush()
    assert ocr.snapshot().state == State.CLOSED


def test_a_ticket_of_another_breaker_is_refused(breakers: Breakers) -> None:
    ticket = breakers.get("ner").admit()
    with pytest.raises(ValueError, match="guarded on"):
        breakers.get("ocr").guard(ticket)


def test_the_calls_own_timeout_replaces_the_policys(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    short = ocr.guard(timeout=0.05)
    with short:
        time.sleep(0.1)  # well within call_timeout, past its own
    assert short.outcome is Outcome.TIMEOUT and short.elapsed is not None and short.elapsed >= 0.1
    long = ocr.guard(timeout=2.0, recorded=lambda seconds: seconds / 10)
    with long:
        time.sleep(0.55)  # past call_timeout, within its own
    assert long.outcome is Outcome.SUCCESS
    assert totals(breakers) == {"timeout": 1, "success": 1}


def test_the_breaker_is_told_the_transformed_duration(breakers: Breakers) -> None:
    ocr = breakers.get("ocr")
    told: list[float] = []

    def per_reference_input(seconds: float) -> float:
        told.append(seconds)
        return seconds + 1.0  # past slow_call_duration

    guarded = ocr.guard(recorded=per_reference_input)
    with guarded:
        pass
    assert guarded.outcome is Outcome.SUCCESS and told == [guarded.elapsed]
    assert totals(breakers) == {"slow": 1}


@pytest.mark.parametrize(("raised", "outcome"), [
    (RuntimeError("model crashed"), Outcome.FAILURE),
    (InputError("zero-byte image"), Outcome.IGNORED),
    (KeyboardInterrupt(), Outcome.IGNORED),
])
def test_the_outcome_of_a_call_that_raised_is_exposed(breakers: Breakers, raised: BaseException,
                                                      outcome: Outcome) -> None:
    guarded = breakers.get("ocr").guard()
    assert guarded.outcome is None and guarded.elapsed is None
    with pytest.raises(type(raised)):
        with guarded:
            raise raised
    assert guarded.outcome is outcome and guarded.elapsed is not None
    assert totals(breakers) == {outcome.value: 1}


def test_the_registrys_classifier_decides() -> None:
    with Breakers(default_policy=POLICY,
                  classifier=ExceptionClassifier(timeouts=(ModelTimedOut,))) as configured:
        guarded = configured.get("ocr").guard()
        with pytest.raises(ModelTimedOut):
            with guarded:
                raise ModelTimedOut("soft limit")
        assert guarded.outcome is Outcome.TIMEOUT
