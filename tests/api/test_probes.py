"""Worker probes and the fleet view, with a real worker of this module's own (echo and
fallback queues: no Paddle model is loaded): the probe file it refreshes, ``python -m
workers.probe`` as Kubernetes would run it, a frozen worker and a lost Redis; the fleet's
store-degraded flags and bounded error labels in /metrics; ``fusebox doctor``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http import create_app
from breaker.keyspace import Keyspace
from tests.api.conftest import cli_env, fusebox_command
from tests.support.fleet import Fleet, wait_for
from workers import probe


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    path = tmp_path_factory.mktemp("probe") / "worker.json"
    fleet = Fleet()
    fleet.start(["echo", "fallback"], "probed", FUSEBOX_PROBE_FILE=str(path))
    yield fleet, path
    fleet.close()


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus exposition text -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def run_probe(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.probe", "--file", str(path), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "FUSEBOX_PROBE_FILE": "/nonexistent"})


def test_the_worker_refreshes_its_probe_file_and_the_probe_passes(small: tuple[Fleet, Path]) -> None:
    fleet, path = small
    assert wait_for(path.exists, 20)
    first = probe.WorkerHealth.model_validate_json(path.read_text())
    assert first.hostname == fleet.workers[0].nodename and first.queues == ["echo", "fallback"]
    assert first.redis_ok and first.store_shared and not first.store_degraded
    assert wait_for(lambda: probe.WorkerHealth.model_validate_json(path.read_text()).at > first.at, 10)  # refreshed
    live, ready = run_probe(path), run_probe(path, "--ready")
    assert live.returncode == 0 and ready.returncode == 0, (live.stderr, ready.stderr)
    assert "ok" in live.stdout and first.hostname in live.stdout
    missing = run_probe(path.with_name("nothing.json"))
    assert missing.returncode == 1 and "no probe file" in missing.stderr


def test_a_frozen_worker_fails_its_probe_and_recovers(small: tuple[Fleet, Path]) -> None:
    fleet, path = small
    worker = fleet.workers[0]
    assert worker.process is not None
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        stale = wait_for(lambda: (r := run_probe(path, "--max-age", "3")).returncode == 1 and r, 20)
        assert stale and "not written" in stale.stderr
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    assert wait_for(lambda: run_probe(path, "--max-age", "3").returncode == 0, 20)


def test_metrics_report_each_workers_store_mode_and_bound_error_labels(small: tuple[Fleet, Path]) -> None:
    fleet, _ = small
    prefix = fleet.prefix
    # A worker elsewhere whose breakers lost the store reports it (what workers.probe.beat writes).
    other = probe.WorkerHealth(hostname="gpu-7@elsewhere", queues=["ocr"], consuming=[], at=time.time(),
                               store_shared=False, store_degraded=True)
    fleet.db.set(Keyspace(prefix).worker_health(other.hostname), other.model_dump_json(), ex=30)
    fleet.db.zadd(Keyspace(prefix).fleet, {other.hostname: time.time()})
    for name in ("InvalidInput", "KeyError", "SomeVendorError", "ValueError"):
        fleet.db.hincrby(f"{prefix}:stats:echo", f"error:{name}", 2)
    with TestClient(create_app(fleet.settings, client=fleet.client)) as http:
        text = http.get("/metrics").text
        body = http.get("/health/fleet").json()
    samples = parse(text)
    assert samples[("fusebox_breaker_store_degraded", (("process", "gpu-7@elsewhere"),))] == 1.0
    assert samples[("fusebox_breaker_store_degraded", (("process", fleet.workers[0].nodename),))] == 0.0
    assert body["store_degraded"] == ["gpu-7@elsewhere"]
    errors = {dict(labels)["error"]: v for (name, labels), v in samples.items()
              if name == "fusebox_job_errors_total" and dict(labels)["model"] == "echo"}
    assert errors == {"InvalidInput": 2.0, "other": 6.0}  # before: one series per exception class
    assert samples[("fusebox_queue_workers", (("model", "echo"), ("queue", "echo")))] == 1.0
    assert samples[("fusebox_queue_workers", (("model", "ocr"), ("queue", "ocr")))] == 1.0  # gpu-7
    # One label name for a model on every series; ratios named _ratio; no outcome that is not a call.
    assert all("breaker" not in dict(labels) for _, labels in samples)
    assert not [n for n, _ in samples if n.endswith("_rate") or n.endswith("_rate_threshold")]
    assert {dict(labels)["outcome"] for n, labels in samples if n == "fusebox_breaker_calls_total"} == {
        "success", "slow", "failure", "timeout", "ignored"}
    assert ("fusebox_breaker_rejected_total", (("model", "echo"),)) in samples
    fleet.db.delete(Keyspace(prefix).worker_health(other.hostname), f"{prefix}:stats:echo")
    fleet.db.zrem(Keyspace(prefix).fleet, other.hostname)


def test_doctor_names_missing_queues_faults_and_open_breakers(small: tuple[Fleet, Path]) -> None:
    fleet, _ = small
    fleet.faults.set("echo", probe_fault(), ttl=120)
    fleet.breaker("sentiment").trip(reason="doctor test")
    try:
        result = subprocess.run([*fusebox_command(), "doctor", "--json"], env=cli_env(fleet), capture_output=True,
                                text=True, timeout=120)
    finally:
        fleet.faults.clear("echo")
        fleet.breaker("sentiment").reset(reason="doctor test over")
    assert result.returncode == 1, result.stderr  # this fleet serves echo and fallback only
    report = json.loads(result.stdout)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert not report["ok"] and status["redis"] == "ok" and status["broker"] == "ok"
    assert status["queue ocr"] == status["queue sentiment"] == status["queue ner"] == "fail"
    assert status["queue fallback"] == "ok" and status["queue echo"] == "ok"
    assert status["fault echo"] == "warn" and status["breaker sentiment"] == "warn"
    assert status["breaker store on workers"] == "ok" and status["breaker store here"] == "ok"

    down = subprocess.run([*fusebox_command(), "doctor"], env=cli_env(fleet, FUSEBOX_REDIS_URL="redis://127.0.0.1:1/0"),
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "redis" in down.stdout and "Traceback" not in down.stdout + down.stderr


def probe_fault() -> "FaultSpec":
    from workers.faults import FaultSpec

    return FaultSpec(error_rate=0.5)


def test_a_worker_that_lost_redis_is_alive_but_not_ready(small: tuple[Fleet, Path]) -> None:
    fleet, path = small
    fleet.redis.stop()
    try:
        assert wait_for(lambda: run_probe(path, "--ready").returncode == 1, 30)
        live = run_probe(path)
        assert live.returncode == 0, live.stderr  # its process and control thread are fine
        assert "Redis" in run_probe(path, "--ready").stderr or "consumer" in run_probe(path, "--ready").stderr
    finally:
        fleet.redis.start()
    assert wait_for(lambda: run_probe(path, "--ready").returncode == 0, 60)
