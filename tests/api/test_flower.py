"""Flower, as compose runs it (basic auth): model tasks and fallback tasks visible by name."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fleet import Fleet, wait_for
from tests.support.flower import AUTH, running_flower

pytest.importorskip("flower", reason="the `flower` extra is not installed")


def test_flower_shows_model_and_fallback_tasks(fleet: Fleet) -> None:
    with running_flower(fleet) as base:
        assert httpx.get(base + "/api/tasks", timeout=2).status_code == 401  # no password, no tasks
        fleet.client.submit_echo("seen by flower").get(timeout=20)
        fleet.client.submit("echo", text="to the fallback", route="fallback").get(timeout=20)

        def names() -> set[str]:
            tasks = httpx.get(base + "/api/tasks", auth=AUTH, timeout=2).json()
            return {t.get("name") for t in tasks.values() if t.get("state") == "SUCCESS"}

        assert wait_for(lambda: {"fusebox.echo", "fusebox.fallback.echo"} <= names(), 15), names()
