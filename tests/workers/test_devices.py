"""A sick device is not a sick model (issue 21), on real Celery workers and Redis: four echo
workers with one pool process each (four devices); on some of them every call raises
Paddle's CUDA illegal-memory-access error (a worker-targeted fault switch). The sick device
is ejected alone, its jobs run on the healthy ones, the model's breaker stays CLOSED; when
every device is sick the breaker trips as before; a device whose fault is gone comes back
through one probe job."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from breaker import State
from tests.support.fleet import Fleet, fresh
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess
from tests.workers.conftest import needs_broker
from workers.devices.gate import SEEN_INTERVAL
from workers.devices.store import DeviceRecord, DeviceStore
from workers.devices.rules import EjectionRules
from workers import probe
from workers.faults import SWITCH_TTL, FaultSpec

pytestmark = [pytest.mark.redis, pytest.mark.slow]

EJECTION_TIME = 4.0  # short, so that probes and returns fit in a test


def start_fleet(broker: str = "redis") -> Fleet:
    fleet = Fleet(broker=broker, FUSEBOX_DEVICE_EJECTION_TIME=str(EJECTION_TIME),
                  FUSEBOX_DEVICE_MAX_EJECTION_TIME=str(2 * EJECTION_TIME))
    try:
        for i in range(4):
            fleet.start(["echo"], f"gpu{i}")
        fleet.start(["fallback"], "cpu")
    except BaseException:
        fleet.close()
        raise
    return fleet


@pytest.fixture(scope="module")
def device_fleet() -> Iterator[Fleet]:
    fleet = start_fleet()
    yield fleet
    fleet.close()


def forget_devices(fleet: Fleet) -> None:
    """A clean slate of device records; waits until every worker marked its devices live
    again (as a running fleet always has them: the cap counts live devices)."""
    for key in fleet.db.scan_iter(f"{fleet.prefix}:device*"):
        fleet.db.delete(key)
    time.sleep(SEEN_INTERVAL + 0.3)


@pytest.fixture
def fleet(device_fleet: Fleet) -> Iterator[Fleet]:
    forget_devices(device_fleet)
    yield from fresh(device_fleet)
    for worker in device_fleet.workers:
        device_fleet.faults.clear("echo", worker.nodename)
    forget_devices(device_fleet)


def make_sick(fleet: Fleet, *workers: WorkerProcess) -> None:
    for worker in workers:
        fleet.faults.set("echo", FaultSpec(device_fault=True), worker=worker.nodename)
    time.sleep(SWITCH_TTL + 0.05)


def devices(fleet: Fleet) -> dict[str, DeviceRecord]:
    store = DeviceStore(fleet.db, fleet.prefix, EjectionRules())
    return {r.device.split("/")[0]: r for r in store.records("echo")}


def record_of(fleet: Fleet, worker: WorkerProcess) -> DeviceRecord:
    return devices(fleet)[worker.nodename.replace(":", "_")]


def calls_before_first_ejection(record: DeviceRecord) -> int:
    # every later call was one probe job, each failed one ejecting the device once more
    return record.calls - max(0, record.ejections - 1)


def run_jobs(fleet: Fleet, count: int) -> list:
    handles = [fleet.client.submit_echo(f"job {i}") for i in range(count)]
    return [h.get(timeout=120) for h in handles]


def model_workers(fleet: Fleet) -> list[WorkerProcess]:
    return [w for w in fleet.workers if w.queues == ["echo"]]


def test_one_sick_device_of_four_is_ejected_alone(fleet: Fleet) -> None:
    epoch = fleet.breaker("echo").snapshot().epoch
    sick = model_workers(fleet)[0]
    make_sick(fleet, sick)
    results = run_jobs(fleet, 300)
    by_model = sum(r.served_by == "model" for r in results)
    degraded = sum(r.degraded for r in results)
    assert by_model >= 297, (by_model, [r.reason for r in results if r.degraded][:5])
    assert degraded <= 3
    record = record_of(fleet, sick)
    assert record.state in ("ejected", "probing") and record.ejections >= 1
    assert calls_before_first_ejection(record) <= 5, record
    snapshot = fleet.breaker("echo").snapshot()
    assert snapshot.state == State.CLOSED and snapshot.epoch == epoch, "the model's breaker left CLOSED"
    healthy = [r for name, r in devices(fleet).items() if name != sick.nodename]
    assert all(r.state == "healthy" and r.ejections == 0 for r in healthy)
    assert probe.fleet(fleet.db, fleet.prefix).ejected_devices == {"echo": [record.device]}  # /health/fleet
    pauses = [r for r in fleet.control_log() if r["action"] == "pause"]
    assert pauses and {r["worker"] for r in pauses} == {sick.nodename}, pauses  # the others kept consuming
    assert all(r["cause"] == "devices ejected" and r["state"] == "closed" for r in pauses)


def test_two_sick_devices_of_four(fleet: Fleet) -> None:
    epoch = fleet.breaker("echo").snapshot().epoch
    sick = model_workers(fleet)[:2]
    make_sick(fleet, *sick)
    results = run_jobs(fleet, 300)
    by_model = sum(r.served_by == "model" for r in results)
    assert by_model >= 285, (by_model, [r.reason for r in results if r.degraded][:5])
    assert all(record_of(fleet, w).ejections >= 1 for w in sick)
    snapshot = fleet.breaker("echo").snapshot()
    assert snapshot.state == State.CLOSED and snapshot.epoch == epoch, "the model's breaker left CLOSED"


def test_every_device_sick_trips_the_model_breaker(fleet: Fleet) -> None:
    make_sick(fleet, *model_workers(fleet))
    policy = fleet.breaker("echo").policy
    results = []
    # One job at a time, as a low-traffic caller sends them, until the breaker trips.
    for i in range(policy.minimum_calls + 2 * 4 + 1):
        results.append(fleet.client.submit_echo(f"job {i}").get(timeout=30))
        if fleet.state("echo") != State.CLOSED:
            break
    assert fleet.state("echo") != State.CLOSED, "the model's breaker did not trip"
    assert len(results) <= policy.minimum_calls + 2 * 4, len(results)
    # the fallback's answer (from the result cache for a text an earlier test ran)
    assert all(r.degraded and r.served_by != "model" for r in results), [
        (r.served_by, r.reason) for r in results]
    after = fleet.client.submit_echo("while OPEN").get(timeout=30)
    assert after.degraded and after.served_by != "model"
    ejected = [r for r in devices(fleet).values() if r.ejections]
    assert 1 <= len(ejected) <= 2, "more than half of the devices ejected"


def test_a_device_whose_fault_is_gone_serves_again_through_one_probe(fleet: Fleet) -> None:
    sick = model_workers(fleet)[0]
    make_sick(fleet, sick)
    assert all(r.served_by == "model" for r in run_jobs(fleet, 40))
    assert wait_for(lambda: record_of(fleet, sick).ejections >= 1, 10)
    before = record_of(fleet, sick)
    fleet.faults.clear("echo", sick.nodename)
    cleared = time.time()
    limit = 2 * EJECTION_TIME * max(1, before.ejections) + 5

    def back() -> bool:
        fleet.client.submit_echo("keep the fleet busy").get(timeout=30)
        return record_of(fleet, sick).state == "healthy"

    assert wait_for(back, limit), record_of(fleet, sick)
    assert time.time() - cleared <= limit
    after = record_of(fleet, sick)
    assert after.reason == "probe succeeded" and after.ejections == before.ejections
    served = run_jobs(fleet, 40)
    assert all(r.served_by == "model" for r in served)
    assert record_of(fleet, sick).calls > after.calls, "the restored device took no more jobs"


@pytest.mark.rabbitmq
def test_one_sick_device_on_rabbitmq() -> None:
    needs_broker("rabbitmq")
    fleet = start_fleet("rabbitmq")
    try:
        epoch = fleet.breaker("echo").snapshot().epoch
        sick = model_workers(fleet)[0]
        make_sick(fleet, sick)
        results = run_jobs(fleet, 300)
        assert sum(r.served_by == "model" for r in results) >= 297
        assert calls_before_first_ejection(record_of(fleet, sick)) <= 5
        snapshot = fleet.breaker("echo").snapshot()
        assert snapshot.state == State.CLOSED and snapshot.epoch == epoch
    finally:
        fleet.close()
