"""docker-compose.yml cannot run here (no Docker daemon): check what can be checked without
one. Every service's command names a real module or entry point, and every FUSEBOX_*
variable it sets is one fusebox reads (and the README documents)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def fusebox_reads() -> set[str]:
    """Every FUSEBOX_* name the packages' code mentions (prefix fragments excluded)."""
    names: set[str] = set()
    for package in ("breaker", "workers", "api"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"FUSEBOX_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    return names


def test_the_services_a_fleet_needs_are_there() -> None:
    assert {"redis", "worker-gpu", "worker-cpu", "flower", "api"} <= set(SERVICES)
    gpu = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"


@pytest.mark.parametrize("name", [n for n in SERVICES if n != "redis"])
def test_each_command_names_a_real_entry_point(name: str) -> None:
    command = SERVICES[name]["command"]
    if command[0] == "celery":
        assert command[1] == "-A"
        module = importlib.import_module(command[2])
        assert hasattr(module, "app") or hasattr(module, "celery"), f"{command[2]} has no Celery app"
        sub = command[3]
        assert sub in ("worker", "flower")
        if sub == "flower":
            assert importlib.util.find_spec("flower") is not None, "flower is not installed (the `flower` extra)"
            assert any(a.startswith("--basic-auth=") for a in command), "Flower must ask for a password"
        else:
            queues = command[command.index("-Q") + 1].split(",")
            from workers.models import FALLBACK_QUEUE, MODELS

            assert set(queues) <= set(MODELS) | {FALLBACK_QUEUE}
    else:
        assert command[0] in SCRIPTS, f"{command[0]} is not a console script of fusebox"
        module, func = SCRIPTS[command[0]].split(":")
        assert callable(getattr(importlib.import_module(module), func))
        if command[:2] == ["fusebox", "serve"]:
            from api.cli import serve  # the verb exists

            assert callable(serve)


def test_every_fusebox_variable_set_is_one_fusebox_reads() -> None:
    read = fusebox_reads()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    anchors = COMPOSE.get("x-fusebox-env", {})
    for name, service in SERVICES.items():
        env = {**anchors, **(service.get("environment") or {})} if name != "redis" else {}
        for var in env:
            if var.startswith("FUSEBOX_"):
                assert var in read, f"{name} sets {var}, which fusebox never reads"
    for var in read:
        assert var in readme, f"README's configuration reference does not mention {var}"
