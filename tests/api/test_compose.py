"""docker-compose.yml and docker-compose.test.yml: what can be checked without Docker
(every service's command names a real module or entry point, every FUSEBOX_* variable it
sets is one fusebox reads and the README documents, the test override keeps every
container on the host network), and, where the machine allows it (root, Docker installed),
the real thing: `python -m tools.compose_check` (= `./dev compose-check`) builds the images
and runs the fleet in containers. That one costs about 3 minutes with the images cached,
10 more the first time (debootstrap, then PaddlePaddle and the rest downloaded into the
image); FUSEBOX_COMPOSE_CHECK=0 skips it."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OVERRIDE = yaml.safe_load((ROOT / "docker-compose.test.yml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def fusebox_reads() -> set[str]:
    """Every FUSEBOX_* variable fusebox reads: one per field of the one settings object."""
    return {var for var, _, _ in Settings.variables()}


def test_the_services_a_fleet_needs_are_there() -> None:
    assert {"redis", "worker-gpu", "worker-cpu", "flower", "api"} <= set(SERVICES)
    gpu = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"


@pytest.mark.parametrize("name", [n for n, service in SERVICES.items() if "build" in service])
def test_each_command_names_a_real_entry_point(name: str) -> None:
    """Every service built from fusebox's image runs a real fusebox or Celery command (the
    Redis and Sentinel services run Redis's own image)."""
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
            from api.cli.ops import serve  # the verb exists

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


def test_the_test_override_keeps_every_container_on_the_host_network() -> None:
    """No bridge network: every service that runs in the check uses the host's, and none
    listens on the ports a machine's own Redis (6379) or RabbitMQ (5672) use."""
    services = OVERRIDE["services"]
    # What `up` starts: services without a profile, once the override is applied.
    running = [n for n in {**SERVICES, **services}
               if not {**SERVICES.get(n, {}), **services.get(n, {})}.get("profiles")]
    assert set(running) == {"redis", "worker-model", "worker-cpu", "flower", "api"}
    for name in running:
        assert services[name].get("network_mode") == "host", f"{name} is not on the host network"
        assert "networks" not in services[name] and "networks" not in SERVICES.get(name, {})
    values = json.dumps([OVERRIDE["services"], {k: v for k, v in OVERRIDE.items() if k != "services"}])
    assert not re.search(r"\b(6379|5672)\b", values)


def test_the_cpu_model_worker_stands_in_for_the_gpu_one() -> None:
    """Same queues as worker-gpu, and node names that differ per role (all containers share
    the host's name under host networking; the healthchecks read the heartbeat by node)."""
    model = OVERRIDE["services"]["worker-model"]["command"]
    gpu = SERVICES["worker-gpu"]["command"]
    assert model[model.index("-Q") + 1] == gpu[gpu.index("-Q") + 1]
    nodes = {name: cmd[cmd.index("-n") + 1] for name, cmd in
             [("worker-model", model), ("worker-gpu", gpu), ("worker-cpu", SERVICES["worker-cpu"]["command"])]}
    assert nodes["worker-model"] == nodes["worker-gpu"] != nodes["worker-cpu"]
    for name, node in nodes.items():
        service = OVERRIDE["services"].get(name, {}) if name == "worker-model" else SERVICES[name]
        assert ":workers:" + node.split("@")[0] + "@" in " ".join(service["healthcheck"]["test"])


def compose_check_unavailable() -> str | None:
    """Why the compose check cannot run on this machine, or None when it can."""
    if os.environ.get("FUSEBOX_COMPOSE_CHECK") == "0":
        return "FUSEBOX_COMPOSE_CHECK=0"
    if os.geteuid() != 0:
        return "the compose check needs root (it starts dockerd and runs containers)"
    missing = [tool for tool in ("docker", "dockerd", "docker-compose", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"the compose check needs {', '.join(missing)} (apt-get install docker.io docker-compose debootstrap)"
    return None


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_compose_check_runs_the_fleet_in_containers() -> None:
    """`./dev compose-check`: images built, every service healthy, every job answered, the
    trip pauses the worker in its container and the reset resumes it, Flower behind its
    password; the fleet is down afterwards."""
    reason = compose_check_unavailable()
    if reason:
        pytest.skip(f"compose check skipped: {reason}")
    proc = subprocess.Popen([sys.executable, "-m", "tools.compose_check"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=2200)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the check still brings the fleet down and stops its dockerd
        stdout, stderr = proc.communicate(timeout=180)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stderr[-3000:]
    report = json.loads(lines[-1])
    assert proc.returncode == 0, (report, stderr[-3000:])
    assert report["error"] is None
    assert set(report["images_built"]) == {"fusebox:local", "fusebox-redis:local"}
    assert {"redis", "worker-model", "worker-cpu", "flower", "api"} <= set(report["services_healthy"])
    assert report["jobs"] == report["answered"] >= 9 and report["lost"] == 0
    assert report["trip_paused_all"] and report["recovered"] and report["flower_ok"]
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=fusebox-check"],
                          capture_output=True, text=True)
    assert left.stdout.strip() == "", "containers left behind"


# -- secure by default (issue 26, findings 1 and 8) -------------------------------------------

SECRETS = ("FLOWER_PASSWORD", "FUSEBOX_API_TOKEN", "REDIS_WORKER_PASSWORD", "REDIS_API_PASSWORD",
           "REDIS_FLOWER_PASSWORD")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of docker-compose.yml with exactly ``env`` (no inherited secrets)."""
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"\$\{" + missing + r":\?[^}]+\}", text), f"{missing} is not required (`${{{missing}:?...}}`)"
    assert not re.search(r"\$\{" + missing + r":-", text), f"{missing} has a default somewhere"
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed: checked on the file only")
    env = {name: "x" * 24 for name in SECRETS if name != missing}
    result = compose_config(env)
    assert result.returncode != 0 and missing in result.stderr, result.stderr


def test_published_on_loopback_only_unless_told_otherwise() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    secrets = {name: "x" * 24 for name in SECRETS}
    merged = yaml.safe_load(compose_config(secrets).stdout)["services"]
    published = {name: service["ports"] for name, service in merged.items() if service.get("ports")}
    assert set(published) == {"api", "flower"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports
    opened = yaml.safe_load(compose_config({**secrets, "PUBLISH_ADDRESS": "0.0.0.0"}).stdout)["services"]
    assert all(str(p).startswith("0.0.0.0:") for p in opened["api"]["ports"])


def test_redis_has_no_default_user_and_each_service_its_own() -> None:
    script = "\n".join(COMPOSE["x-redis-start"])
    assert "user default off" in script and "--protected-mode yes" in script and "--aclfile" in script
    for deny in ("-flushall", "-config", "-shutdown", "-acl", "-debug", "-module"):
        assert deny in script
    users = {}
    for name, service in SERVICES.items():
        url = (service.get("environment") or {}).get("FUSEBOX_REDIS_URL")
        if "build" in service:
            assert url, f"{name} names no Redis user"
            match = re.match(r"^redis://(\w+):\$\{REDIS_(\w+)_PASSWORD[^}]*\}@redis:6379/0$", url)
            assert match and match.group(1).upper() == match.group(2), url
            users[name] = match.group(1)
    assert users["worker-gpu"] == users["worker-cpu"] == "worker"
    assert len({users[n] for n in ("worker-gpu", "api", "flower", "alerts")}) == 4


def test_redis_and_sentinels_do_not_run_as_root_and_sentinels_need_a_password() -> None:
    for name in ("redis", "redis-replica", "sentinel-1"):
        assert SERVICES[name].get("user") == "redis", name
    sentinel = " ".join(SERVICES["sentinel-1"]["command"])
    assert "requirepass" in sentinel and "auth-user fusebox sentinel" in sentinel and "auth-pass" in sentinel
    assert "--masteruser" in SERVICES["redis-replica"]["command"]


def test_reads_and_faults_stay_closed_in_compose() -> None:
    """Job answers need the token (no FUSEBOX_API_OPEN_READS), no worker obeys fault
    switches (no FUSEBOX_CHAOS) and the fault route has no token unless one is given."""
    for name, service in SERVICES.items():
        env = service.get("environment") or {}
        assert "FUSEBOX_API_OPEN_READS" not in env and "FUSEBOX_CHAOS" not in env, name
    assert SERVICES["api"]["environment"]["FUSEBOX_API_CHAOS_TOKEN"] == "${FUSEBOX_API_CHAOS_TOKEN:-}"
