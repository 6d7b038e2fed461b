"""Flower shows a model task that its worker replaced by the fallback (``Task.replace``,
same task id) as degraded, not as the model's success."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.fleet import Fleet, wait_for
from tests.support.flower import AUTH, running_flower

pytest.importorskip("flower", reason="the `flower` extra is not installed")
pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_a_model_task_replaced_by_its_fallback_reads_degraded_in_flower(fleet: Fleet) -> None:
    with running_flower(fleet) as base:
        fleet.use_policy("echo", minimum_calls=1000)  # keep the breaker closed: a failure, replaced
        fleet.fault("echo", error_rate=1.0)
        replaced = fleet.client.submit_echo("fails on the model", route="model")
        result = replaced.get(timeout=20)
        assert result.degraded and result.served_by == "fallback:neutral"
        fleet.clear_fault("echo")
        healthy = fleet.client.submit_echo("served by the model")
        assert not healthy.get(timeout=20).degraded

        def task(task_id: str) -> dict[str, Any]:
            answer = httpx.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=2)
            return answer.json() if answer.status_code == 200 else {}

        assert wait_for(lambda: task(replaced.id).get("state") == "SUCCESS" and task(healthy.id).get("state") == "SUCCESS", 15)
        seen, ok = task(replaced.id), task(healthy.id)
        # The replaced job, under its one id: named by the fallback task that answered it,
        # with the reason in its arguments and `degraded: True` leading its result.
        assert seen["name"] == "fusebox.fallback.echo" and seen["worker"].startswith("cpu-")
        assert "model failed: InjectedFault" in seen["kwargs"]
        assert "'degraded': True, 'served_by': 'fallback:neutral'" in seen["result"]
        assert ok["name"] == "fusebox.echo" and "'degraded': False, 'served_by': 'model'" in ok["result"]

