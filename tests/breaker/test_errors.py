"""The breaker's exceptions: one tree under FuseboxError, and one definition of what a
store failure is, which the fail-safe still tells apart by kind."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

from breaker import (
    STORE_ERRORS,
    BreakerError,
    CallNotPermitted,
    CallTimeout,
    FuseboxError,
    InputError,
    State,
    StoreUnavailable,
)
from breaker.errors import OutcomeUncertain, ScriptFailed
from breaker.failsafe import StoreFault, classify


@pytest.mark.parametrize("error", [CallNotPermitted, CallTimeout, StoreUnavailable, ScriptFailed, OutcomeUncertain])
def test_the_breakers_own_errors_are_breaker_errors(error: type[Exception]) -> None:
    assert issubclass(error, BreakerError) and issubclass(error, FuseboxError)


def test_input_error_is_a_fusebox_error_and_still_a_value_error() -> None:
    with pytest.raises(ValueError):
        raise InputError("empty text")
    assert issubclass(InputError, FuseboxError) and not issubclass(InputError, BreakerError)


def test_a_call_timeout_is_never_a_store_failure() -> None:
    assert not isinstance(CallTimeout("ran past 2.0s"), STORE_ERRORS)
    assert not issubclass(CallTimeout, TimeoutError)


def test_script_and_connection_failures_stay_store_failures_of_their_kind() -> None:
    bug = ResponseError("Error running script (call to f_1): user_script:3: attempt to index nil")
    failed = ScriptFailed("record", "ocr", str(bug))
    failed.__cause__ = bug
    uncertain = OutcomeUncertain(RedisConnectionError("reset by peer"), ["b1"])
    refused = OutcomeUncertain(ReadOnlyError("You can't write against a read only replica."), ["b2"])
    assert all(isinstance(e, STORE_ERRORS) for e in (failed, uncertain, refused))
    assert isinstance(failed, ResponseError)
    assert classify(failed) == StoreFault.SCRIPT_ERROR
    assert classify(uncertain) == StoreFault.UNREACHABLE
    assert classify(refused) == StoreFault.REFUSING
    assert str(failed).startswith("record.lua failed for breaker 'ocr'")


def test_call_not_permitted_says_why() -> None:
    exc = CallNotPermitted("ocr", State.OPEN, retry_after=2.5)
    assert (exc.breaker, exc.state, exc.retry_after) == ("ocr", State.OPEN, 2.5)
    assert str(exc) == "breaker 'ocr' is open: call not permitted; retry in 2.5s"
