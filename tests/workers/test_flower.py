"""Flower shows a model task that its worker replaced by the fallback (``Task.replace``,
same task id) as degraded, not as the model's success."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from api.services import free_port
from tests.support.fleet import Fleet, wait_for

pytest.importorskip("flower", reason="the `flower` extra is not installed")
pytestmark = [pytest.mark.redis, pytest.mark.slow]
AUTH = ("admin", "pw")


def test_a_model_task_replaced_by_its_fallback_reads_degraded_in_flower(fleet: Fleet) -> None:
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1",
         "--basic-auth=admin:pw"],
        env={**os.environ, **fleet.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(base + "/api/workers", auth=AUTH, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30, interval=0.2), "flower did not start"
        time.sleep(1.0)  # flower's event receiver subscribes after its HTTP server starts
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
    finally:
        flower.terminate()
        flower.wait(10)
