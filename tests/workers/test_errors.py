"""The job errors: under FuseboxError, an unknown model that reads as a plain message, and
errors that cross the result backend intact."""

from __future__ import annotations

import pickle

import pytest

from breaker import FuseboxError, InputError, StoreUnavailable
from workers.app import make_app
from workers.errors import InvalidInput, InvalidJob, JobFailed, PayloadMissing, StoreDown, UnknownModel
from workers.models import MODELS, spec_for
from workers.settings import Settings


def test_the_job_errors_sit_under_fusebox_error() -> None:
    for error in (InvalidJob, InvalidInput, PayloadMissing):
        assert issubclass(error, InputError) and issubclass(error, ValueError)
    for error in (UnknownModel, StoreDown, JobFailed):
        assert issubclass(error, FuseboxError) and not issubclass(error, InputError)
    # A job's Redis data is not the breaker store of an operator action (a 503, a CLI hint).
    assert not issubclass(StoreDown, StoreUnavailable)


def test_an_unknown_model_is_a_key_error_with_a_plain_message() -> None:
    with pytest.raises(KeyError) as caught:
        spec_for("nosuch")
    exc = caught.value
    assert isinstance(exc, UnknownModel) and exc.name == "nosuch"
    assert str(exc) == f"unknown model 'nosuch'; known: {', '.join(sorted(MODELS))}"


@pytest.mark.parametrize("exc", [UnknownModel("nosuch", ["echo", "ocr"]), StoreDown("payload: Redis unreachable"),
                                 JobFailed("no answer"), PayloadMissing("gone")])
def test_errors_survive_pickling_and_the_result_backend(exc: Exception) -> None:
    assert str(pickle.loads(pickle.dumps(exc))) == str(exc)
    backend = make_app(Settings()).backend
    back = backend.exception_to_python(backend.prepare_exception(exc, "json"))
    assert type(back) is type(exc) and str(back) == str(exc)
