"""Flower, as compose runs it (basic auth): model tasks and fallback tasks visible by name."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from api.services import free_port
from tests.support.fleet import Fleet, wait_for

pytest.importorskip("flower", reason="the `flower` extra is not installed")


def test_flower_shows_model_and_fallback_tasks(fleet: Fleet) -> None:
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
                return httpx.get(base + "/api/workers", auth=("admin", "pw"), timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30, interval=0.2), "flower did not start"
        assert httpx.get(base + "/api/tasks", timeout=2).status_code == 401  # no password, no tasks
        time.sleep(1.0)  # flower's event receiver subscribes after its HTTP server starts
        fleet.client.submit_echo("seen by flower").get(timeout=20)
        fleet.client.submit("echo", text="to the fallback", route="fallback").get(timeout=20)

        def names() -> set[str]:
            tasks = httpx.get(base + "/api/tasks", auth=("admin", "pw"), timeout=2).json()
            return {t.get("name") for t in tasks.values() if t.get("state") == "SUCCESS"}

        assert wait_for(lambda: {"fusebox.echo", "fusebox.fallback.echo"} <= names(), 15), names()
    finally:
        flower.terminate()
        flower.wait(10)
