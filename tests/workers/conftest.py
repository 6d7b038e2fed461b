from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet, fresh
from tests.support.rabbit import RabbitUnavailable, rabbit

BROKERS = ["redis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]


def needs_broker(broker: str) -> None:
    """Skips, saying why, when the broker cannot be had here."""
    if broker == "rabbitmq":
        try:
            rabbit()
        except RabbitUnavailable as exc:
            pytest.skip(f"RabbitMQ unavailable: {exc}")


@pytest.fixture(scope="module", params=BROKERS)
def echo_fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Two echo workers (two consumers, so a pause must reach both) and a fallback worker,
    on each broker in turn."""
    needs_broker(request.param)
    fleet = Fleet(broker=request.param)
    try:
        fleet.start(["echo"], "model-a")
        fleet.start(["echo"], "model-b")
        fleet.start(["fallback"], "cpu")
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def fleet(echo_fleet: Fleet) -> Iterator[Fleet]:
    yield from fresh(echo_fleet)
