from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet, fresh


@pytest.fixture(scope="module")
def echo_fleet() -> Iterator[Fleet]:
    """Two echo workers (two consumers, so a pause must reach both) and a fallback worker."""
    fleet = Fleet()
    fleet.start(["echo"], "model-a")
    fleet.start(["echo"], "model-b")
    fleet.start(["fallback"], "cpu")
    yield fleet
    fleet.close()


@pytest.fixture
def fleet(echo_fleet: Fleet) -> Iterator[Fleet]:
    yield from fresh(echo_fleet)
