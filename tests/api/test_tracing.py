"""OpenTelemetry (the ``tracing`` extra): a real worker with FUSEBOX_OTEL=1 and the
in-memory span exporter; the breaker's decisions are attributes of each task's span."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.instrumentation.celery", reason="the `tracing` extra is not installed")

from tests.support.fleet import Fleet  # noqa: E402
from api.services import WorkerProcess  # noqa: E402
from breaker import State  # noqa: E402


def test_breaker_decisions_are_span_attributes(tmp_path: Path) -> None:
    fleet = Fleet()
    try:
        # HALF_OPEN consuming every job (not only the pump's probes), so that a job is
        # refused at run time and its span shows the "rejected" decision.
        env = {**fleet.env, "FUSEBOX_OTEL": "1", "FUSEBOX_TEST_SPANS_DIR": str(tmp_path),
               "FUSEBOX_HALF_OPEN_CONSUMPTION": "all"}
        worker = WorkerProcess(["echo", "fallback"], f"traced-{fleet.prefix}", 2, env,
                               app_module="tests.support.traced_worker")
        worker.start(fleet.client.app)
        try:
            assert fleet.client.submit_echo("traced").get(timeout=20).served_by == "model"
            # HALF_OPEN with one probe permit, and a slow model: of two jobs running side by
            # side, one is the probe and the other is refused by the breaker.
            fleet.use_policy("echo", wait_in_open=0.5, permitted_calls_in_half_open=1, call_timeout=5.0,
                             max_wait_in_half_open=30.0)
            fleet.fault("echo", latency=1.5)
            fleet.breaker("echo").trip(reason="tracing test")
            assert fleet.wait_state("echo", State.HALF_OPEN, 10)
            pair = [fleet.client.submit("echo", text=f"probe {i}", route="model") for i in range(2)]
            answers = sorted(h.get(timeout=30).served_by == "model" for h in pair)
            assert answers == [False, True]
        except Exception:
            print(worker.log()[-6000:])
            raise
        finally:
            worker.stop()
    finally:
        fleet.close()

    spans = [s for f in tmp_path.glob("*.json") for s in json.loads(f.read_text())]
    runs = [s["attributes"] for s in spans if s["name"] == "run/fusebox.echo"]
    by_decision = {a.get("fusebox.breaker.decision"): a for a in runs}
    assert len(runs) == 3 and set(by_decision) == {"admitted", "probe", "rejected"}, runs
    admitted = by_decision["admitted"]
    assert admitted["fusebox.breaker"] == "echo" and admitted["fusebox.breaker.state"] == "closed"
    assert admitted["fusebox.breaker.outcome"] == "success"
    assert admitted["fusebox.served_by"] == "model" and admitted["fusebox.degraded"] is False
    probe = by_decision["probe"]
    assert probe["fusebox.breaker.state"] == "half_open" and probe["fusebox.served_by"] == "model"
    rejected = by_decision["rejected"]
    assert rejected["fusebox.breaker.state"] == "half_open" and "fusebox.breaker.outcome" not in rejected
    fallback = [s["attributes"] for s in spans if s["name"] == "run/fusebox.fallback.echo"]
    assert len(fallback) == 1 and fallback[0]["fusebox.degraded"] is True
    assert fallback[0]["fusebox.served_by"] != "model"
