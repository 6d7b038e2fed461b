"""Finding 4 of issue 26: a worker started with the defaults ignores the fault switches in
Redis; only ``FUSEBOX_CHAOS=1`` (the tests' fleets, the demo, the benchmarks) obeys them."""

from __future__ import annotations

import pytest

from tests.support.fleet import Fleet

pytestmark = [pytest.mark.redis]


def test_a_worker_with_default_settings_ignores_a_fault_switch() -> None:
    fleet = Fleet(FUSEBOX_CHAOS="")  # empty counts as unset: the default
    try:
        fleet.start(["echo"], "model")
        fleet.start(["fallback"], "cpu")
        fleet.fault("echo", error_rate=1.0)
        assert fleet.faults.get("echo").active  # the switch is there, in Redis
        results = [fleet.client.submit_echo(f"job {i}", route="model").get(timeout=60) for i in range(3)]
        assert [r.served_by for r in results] == ["model"] * 3
        assert [r.output["text"] for r in results] == ["job 0", "job 1", "job 2"]
        assert fleet.breaker("echo").snapshot().window.failures == 0
    finally:
        fleet.close()


def test_a_worker_with_chaos_on_obeys_it() -> None:
    fleet = Fleet()  # the tests' fleets set FUSEBOX_CHAOS=1
    try:
        fleet.start(["echo"], "model")
        fleet.start(["fallback"], "cpu")
        fleet.fault("echo", error_rate=1.0)
        result = fleet.client.submit_echo("doomed", route="model").get(timeout=60)
        assert result.degraded and result.reason.startswith("model failed: InjectedFault")
    finally:
        fleet.close()
