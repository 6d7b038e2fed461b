from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet


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
    echo_fleet.reset()
    yield echo_fleet
    for worker in echo_fleet.workers:
        assert worker.running, f"worker {worker.name} died; log:\n{worker.log()[-3000:]}"
