from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, fresh

TOKEN = "s3cret-token-for-the-tests"
CHAOS_TOKEN = "operator-token-for-the-tests"  # fault injection: another token than the API's


@pytest.fixture(scope="package")
def api_fleet() -> Iterator[Fleet]:
    """One model worker for every queue (OCR, sentiment, NER, echo) and a fallback worker,
    shared by the API tests; each test resets breakers, faults and policies."""
    fleet = Fleet()
    fleet.start(["ocr", "sentiment", "ner", "echo"], "models")
    fleet.start(["fallback"], "cpu")
    yield fleet
    fleet.close()


@pytest.fixture
def fleet(api_fleet: Fleet) -> Iterator[Fleet]:
    yield from fresh(api_fleet)


def fusebox_command() -> list[str]:
    """The installed console script (the real entry point), next to this Python."""
    script = Path(sys.executable).parent / "fusebox"
    if not script.exists():
        pytest.fail("the `fusebox` console script is not installed (pip install -e .)")
    return [str(script)]


def cli_env(fleet: Fleet, **extra: str) -> dict[str, str]:
    return {**os.environ, **fleet.env, "COLUMNS": "200", **extra}
