"""The device ejection rules (pure) and the device store on a real Redis: the cap holds
when workers race, probes are handed out one at a time, a restore gives a clean window."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from breaker import Outcome
from workers.devices.identity import device_id
from workers.devices.rules import EjectionRules, is_device_fault
from workers.devices.store import DeviceStore
from workers.devices.tracker import DeviceTracker
from workers.faults import DEVICE_FAULT_MESSAGE, InjectedDeviceFault, InjectedFault
from workers.outcomes import device_aware


@pytest.mark.parametrize(("exc", "fault"), [
    (OSError(DEVICE_FAULT_MESSAGE), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
    (RuntimeError("cudaErrorIllegalAddress"), True),
    (RuntimeError("NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus"), True),
    (RuntimeError("uncorrectable ECC error encountered"), True),
    (MemoryError("out of memory"), False),  # stays an out-of-memory failure (workers/gpu.py)
    (RuntimeError("(External) CUDA error(2), out of memory."), False),
    (InjectedFault("injected failure in echo"), False),
    (ValueError("checksum mismatch in the exception handler"), False),
])
def test_device_faults_are_told_from_other_failures(exc: BaseException, fault: bool) -> None:
    assert is_device_fault(exc) is fault


def test_rules() -> None:
    rules = EjectionRules(consecutive_failures=5, outlier_min_calls=10, outlier_gap=0.4, base_time=30,
                          max_time=300, max_share=0.5)
    assert [rules.ejection_time(n) for n in (1, 2, 3, 20)] == [30, 60, 90, 300]
    assert [rules.cap(n) for n in (1, 2, 3, 4, 5, 10)] == [1, 1, 1, 2, 2, 5]
    assert rules.reason(True, 1, [], []) == "device fault"
    assert rules.reason(False, 4, [False] * 4, []) is None
    assert rules.reason(False, 5, [False] * 5, []) == "consecutive failures"
    healthy = [[True] * 20, [True] * 19 + [False]]
    assert rules.reason(False, 1, [True, False] * 5, healthy) == "success-rate outlier"  # 50 % against 97 %
    assert rules.reason(False, 1, [True, False] * 4, healthy) is None  # too few calls to judge
    assert rules.reason(False, 1, [True] * 8 + [False] * 2, healthy) is None  # 80 %: within the gap
    assert rules.reason(False, 1, [True, False] * 5, [[False] * 20]) is None  # the peers fail as much


def test_device_ids() -> None:
    assert device_id("w1@host", "cpu", 3) == "w1@host/cpu3"
    assert device_id("w1@host", "gpu:1", 0, host="box") == "box/gpu1"
    assert ":" not in device_id("w:1@host", "cpu", 0)


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> DeviceStore:
    return DeviceStore(redis_client, key_prefix, EjectionRules(base_time=0.3, max_time=0.6, live_window=30))


def test_at_most_half_the_live_devices_are_ejected_even_when_workers_race(store: DeviceStore) -> None:
    devices = [f"w{i}@h/cpu0" for i in range(8)]
    store.seen("ner", devices)
    results: list[bool] = []
    barrier = threading.Barrier(len(devices))

    def eject(device: str) -> None:
        barrier.wait()
        results.append(store.eject("ner", device, "device fault").ejected)

    threads = [threading.Thread(target=eject, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 4 and len(store.ejected("ner")) == 4
    assert store.healthy("ner") == 4


def test_one_device_may_always_be_ejected(store: DeviceStore) -> None:
    store.seen("ner", ["only@h/cpu0"])
    assert store.eject("ner", "only@h/cpu0", "device fault").ejected
    again = store.eject("ner", "only@h/cpu0", "device fault")
    assert again.ejected and again.already  # not counted twice
    assert store.records("ner")[0].ejections == 1


def test_probe_one_at_a_time_then_restore(store: DeviceStore) -> None:
    store.seen("ner", ["a@h/cpu0", "b@h/cpu0"])
    first = store.eject("ner", "a@h/cpu0", "device fault")
    assert first.ejections == 1 and first.until == pytest.approx(time.time() + 0.3, abs=0.1)
    assert store.claim("ner", "a@h/cpu0", "job-1", lease=60) == "ejected"
    assert store.claim("ner", "b@h/cpu0", "job-1", lease=60) == "run"
    time.sleep(0.35)
    assert store.claim("ner", "a@h/cpu0", "job-2", lease=60) == "probe"
    assert store.claim("ner", "a@h/cpu0", "job-3", lease=60) == "ejected"  # one probe at a time
    second = store.eject("ner", "a@h/cpu0", "probe failed", "again")  # the probe failed
    assert second.ejections == 2 and second.until == pytest.approx(time.time() + 0.6, abs=0.1)
    time.sleep(0.65)
    assert store.claim("ner", "a@h/cpu0", "job-4", lease=60) == "probe"
    store.release("ner", "a@h/cpu0", "job-4")  # never reached the model
    assert store.claim("ner", "a@h/cpu0", "job-5", lease=60) == "probe"
    store.record("ner", "a@h/cpu0", False)
    assert store.restore("ner", "a@h/cpu0")
    assert store.claim("ner", "a@h/cpu0", "job-6", lease=60) == "run"
    record = {r.device: r for r in store.records("ner")}["a@h/cpu0"]
    assert record.state == "healthy" and store.outcomes("ner", "a@h/cpu0") == []  # a clean window


def test_the_classifier_blames_the_device_only_while_the_cap_allows(store: DeviceStore) -> None:
    tracker = DeviceTracker(store, store.rules)
    classify = device_aware(tracker.judge).classify
    store.seen("ner", ["a@h/cpu0", "b@h/cpu0"])
    fault = InjectedDeviceFault(DEVICE_FAULT_MESSAGE)
    assert classify(fault) is Outcome.FAILURE  # outside a model call: as before
    with tracker.calling("ner", "a@h/cpu0", "a@h") as call:
        assert classify(fault) is Outcome.IGNORED
    assert call.blamed == "device fault" and call.fault
    with tracker.calling("ner", "b@h/cpu0", "b@h") as call:
        assert classify(fault) is Outcome.FAILURE  # 1 of 2 ejected already: the model's evidence
    assert call.blamed is None
    with tracker.calling("ner", "b@h/cpu0", "b@h") as call:
        assert classify(InjectedFault("x")) is Outcome.FAILURE
        assert classify(ValueError("bad")) is Outcome.FAILURE
    assert {r.device: r.failures for r in store.records("ner")} == {"a@h/cpu0": 1, "b@h/cpu0": 3}


def test_a_models_only_device_is_not_blamed_its_failures_count_for_the_model(store: DeviceStore) -> None:
    """A model served by one device (one GPU, or the last healthy one): a model fault's
    failures in a row count for the model's breaker and eject nothing, else the breaker of a
    model failing on its only device would never trip."""
    tracker = DeviceTracker(store, store.rules)
    classify = device_aware(tracker.judge).classify
    store.seen("ner", ["only@h/cpu0"])
    outcomes = []
    for _ in range(store.rules.consecutive_failures + 3):
        with tracker.calling("ner", "only@h/cpu0", "only@h") as call:
            outcomes.append(classify(InjectedFault("the model is broken")))
        assert call.blamed is None
    assert outcomes == [Outcome.FAILURE] * len(outcomes)
    with tracker.calling("ner", "only@h/cpu0", "only@h") as call:
        assert classify(InjectedDeviceFault(DEVICE_FAULT_MESSAGE)) is Outcome.FAILURE  # even a device fault
    assert store.ejected("ner") == {}


def test_readiness_fails_while_every_device_of_the_worker_is_ejected(tmp_path) -> None:
    from workers.probe import WorkerHealth, check, write_probe_file

    path = tmp_path / "probe.json"
    now = time.time()
    write_probe_file(WorkerHealth(hostname="w@h", queues=["echo", "echo.bypass"], at=now, ejected=["echo"]), path)
    ok, why = check(path, ready=True)
    assert not ok and "every device ejected" in why
    assert check(path)[0], "liveness does not care: restarting would not mend the GPU"
    write_probe_file(WorkerHealth(hostname="w@h", queues=["echo", "ner"], at=now, ejected=["echo"]), path)
    assert check(path, ready=True)[0], "it still serves ner"
