"""A job's life on a real fleet, on each broker (Redis, RabbitMQ): priorities, unknown
ids, cancelling; and how the broker routes (each queue bound to its own exchange)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.exceptions import TaskRevokedError
from fastapi.testclient import TestClient

from api.client import CannotCancel, UnknownJob
from workers.errors import InvalidJob
from api.http import create_app
from breaker import State
from tests.support.fleet import Fleet, wait_for
from workers.app import queue_names

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TOKEN = "lifecycle-token-for-tests"


def model_workers(fleet: Fleet) -> set[str]:
    return {w.nodename for w in fleet.workers if "model" in w.name}


def pause_echo(fleet: Fleet) -> None:
    """FORCED_OPEN: every echo worker stops consuming (jobs sent with route="model" wait)."""
    trip = fleet.breaker("echo").force_open(reason="test: hold the queue")
    assert wait_for(lambda: {r["worker"] for r in fleet.control_log()
                             if r["action"] == "pause" and r.get("epoch") == str(trip.epoch)} == model_workers(fleet), 10)


@pytest.fixture
def http(fleet: Fleet) -> Iterator[TestClient]:
    app = create_app(fleet.settings.model_copy(update={"api_token": TOKEN}), client=fleet.client)
    with TestClient(app) as client:
        yield client


def test_a_high_priority_job_behind_a_low_priority_backlog_is_answered_first(fleet: Fleet) -> None:
    pause_echo(fleet)
    backlog = [fleet.client.submit_echo(f"batch {i}", route="model", priority=0) for i in range(200)]
    urgent = fleet.client.submit_echo("interactive", route="model", priority=9)
    assert fleet.queued("echo") == 201
    fleet.breaker("echo").reset()
    assert urgent.get(timeout=30).served_by == "model"
    answered_before = sum(h.ready() for h in backlog)
    assert all(h.get(timeout=60).served_by == "model" for h in backlog)
    order = [c["job"] for c in fleet.model_calls("echo")]
    # Each of the two workers takes one job as it resumes: the urgent one is among them.
    assert order.index(urgent.id) < len(model_workers(fleet)), order[:5]
    assert answered_before < len(backlog)


def test_a_priority_out_of_range_is_refused_before_anything_is_sent(fleet: Fleet) -> None:
    for bad in (-1, 10, 2.5, True, "9"):
        with pytest.raises(InvalidJob, match="priority must be an integer from 0 to 9"):
            fleet.client.submit_echo("x", priority=bad)
    assert fleet.queued("echo") == 0


def test_batch_jobs_default_below_interactive_ones(fleet: Fleet, tmp_path: Path) -> None:
    from api.batch import submit_files

    # No echo worker while the jobs queue up (a paused breaker would send the batch to the
    # fallback at submission).
    stopped = [w for w in fleet.workers if "model" in w.name]
    for worker in stopped:
        worker.stop()
        fleet.workers.remove(worker)
    texts = tmp_path / "batch.txt"
    texts.write_text("".join(f"line {i}\n" for i in range(30)), encoding="utf-8")
    report = submit_files(fleet.client, "echo", [str(texts)], out_path=tmp_path / "out.jsonl", wait=False)
    assert report.submitted == 30
    interactive = fleet.client.submit_echo("from a person")  # the default priority
    for worker in stopped:
        fleet.start(["echo"], worker.name.removesuffix(f"-{fleet.prefix}"))
    assert interactive.get(timeout=20).served_by == "model"
    ids = [json.loads(line)["job_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    served = [fleet.client.handle(i, "echo").get(timeout=30) for i in ids]
    assert all(r.served_by == "model" for r in served), [(r.served_by, r.reason) for r in served]
    order = [c["job"] for c in fleet.model_calls("echo")]
    assert order.index(interactive.id) < len(model_workers(fleet)), order[:5]


def test_an_unknown_job_is_answered_as_unknown(fleet: Fleet, http: TestClient) -> None:
    stranger = str(uuid.uuid4())
    with pytest.raises(UnknownJob):
        fleet.client.status(stranger)
    assert http.get(f"/jobs/{stranger}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert http.delete(f"/jobs/{stranger}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    known = fleet.client.submit_echo("known")
    known.get(timeout=20)
    assert fleet.client.status(known.id) == "SUCCESS"
    assert http.get(f"/jobs/{known.id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()["status"] == "SUCCESS"


def test_a_queued_job_cancelled_is_never_run(fleet: Fleet, http: TestClient) -> None:
    pause_echo(fleet)
    doomed = fleet.client.submit_echo("never run me", route="model")
    kept = fleet.client.submit_echo("run me", route="model")
    by_http = fleet.client.submit_echo("cancelled over HTTP", route="model")
    assert fleet.client.cancel(doomed.id) == "cancelled"
    assert fleet.client.cancel(doomed.id) == "already cancelled"
    answer = http.delete(f"/jobs/{by_http.id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["status"] == "CANCELLED"
    assert doomed.status == "CANCELLED" and http.get(f"/jobs/{doomed.id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()["status"] == "CANCELLED"
    fleet.breaker("echo").reset()
    assert kept.get(timeout=20).served_by == "model"
    assert wait_for(lambda: fleet.queued("echo") == 0, 10)
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=5)
    ran = {c["job"] for c in fleet.model_calls("echo")}
    assert kept.id in ran and doomed.id not in ran and by_http.id not in ran
    # A job that finished cannot be cancelled.
    with pytest.raises(CannotCancel):
        fleet.client.cancel(kept.id)
    assert http.delete(f"/jobs/{kept.id}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 409


def test_a_parked_job_cancelled_is_not_rerun(fleet: Fleet) -> None:
    fleet.fault("fallback.echo", error_rate=1.0)
    fleet.breaker("echo").force_open()
    assert wait_for(lambda: fleet.client.breakers.get("echo").state == State.FORCED_OPEN, 5)
    handle = fleet.client.submit_echo("parked, then cancelled")
    assert wait_for(lambda: handle.status == "PARKED", 10)
    assert fleet.client.cancel(handle.id) == "cancelled"
    assert fleet.db.hlen(f"{fleet.prefix}:parked:echo") == 0
    fleet.clear_fault("fallback.echo")
    fleet.breaker("echo").reset()
    fleet.client.submit_echo("after").get(timeout=20)
    assert handle.status == "CANCELLED"
    assert handle.id not in {c["job"] for c in fleet.model_calls("echo")}


def test_fusebox_cancel(fleet: Fleet) -> None:
    pause_echo(fleet)
    handle = fleet.client.submit_echo("cancel me from the shell", route="model")
    env = {**os.environ, **fleet.env, "COLUMNS": "200"}
    fusebox = [str(Path(sys.executable).parent / "fusebox")]
    done = subprocess.run([*fusebox, "cancel", handle.id, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"job_id": handle.id, "status": "CANCELLED", "outcome": "cancelled"}
    assert handle.status == "CANCELLED"
    unknown = subprocess.run([*fusebox, "cancel", "no-such-job"], env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "unknown job" in unknown.stderr and "Traceback" not in unknown.stderr


def test_the_fallback_exchange_routes_only_to_the_fallback_queue(fleet: Fleet) -> None:
    """Issue 16: every model queue was bound to ``fallback`` with key ``fallback``."""
    if fleet.broker == "rabbitmq":
        from tests.support.rabbit import rabbit

        assert fleet.vhost is not None
        bindings = rabbit().bindings(fleet.vhost)
    else:
        bindings = []
        binding = fleet.settings.broker_keys + "_kombu.binding."  # under the fleet's broker key prefix
        for key in fleet.db.scan_iter(binding + "*"):
            exchange = key.decode().removeprefix(binding)
            for member in fleet.db.smembers(key):
                routing_key, _pattern, queue = member.decode().split("\x06\x16")
                bindings.append((exchange, queue, routing_key))
    assert ("echo", "echo", "echo") in bindings and ("fallback", "fallback", "fallback") in bindings
    ours = [b for b in bindings if b[1] in queue_names()]  # not Celery's own (pidbox, events)
    assert [b for b in ours if not b[0] == b[1] == b[2]] == [], bindings
    assert [b for b in bindings if b[0] == "fallback"] == [("fallback", "fallback", "fallback")]


def test_an_interrupted_submit_wait_is_collected_not_resubmitted(fleet: Fleet, tmp_path: Path) -> None:
    # No sentiment worker in this fleet: the jobs wait in their queue, as a long batch's do.
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("".join(f"第{i}条评论,很好\n" for i in range(5)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, **fleet.env, "COLUMNS": "200"}
    fusebox = [str(Path(sys.executable).parent / "fusebox")]
    child = subprocess.Popen([*fusebox, "submit", str(reviews), "--model", "sentiment", "--out", str(out), "--wait"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def lines() -> list[dict[str, str]]:
            return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []

        assert wait_for(lambda: len(lines()) == 5, 60), lines()
        assert child.poll() is None  # still waiting for the answers
    finally:
        child.kill()  # interrupted (kill -9: no chance to write anything more)
        child.wait()
    first = lines()
    assert [r["status"] for r in first] == ["submitted"] * 5 and all(r["job_id"] for r in first)
    from api.batch import submit_files

    report = submit_files(fleet.client, "sentiment", [str(reviews)], out_path=out, wait=True, timeout=1)
    assert (report.submitted, report.collected, report.pending) == (0, 5, 5)
    assert {r["job_id"] for r in lines()[5:]} == {r["job_id"] for r in first}
    for record in first:
        fleet.client.cancel(record["job_id"])


def test_queue_depths_come_from_the_broker(fleet: Fleet, http: TestClient) -> None:
    pause_echo(fleet)
    for i in range(3):
        fleet.client.submit_echo(f"waiting {i}", route="model")
    metrics = http.get("/metrics").text
    depth = {re.search(r'queue="([^"]*)"', line).group(1): float(line.rsplit(" ", 1)[1])  # type: ignore[union-attr]
             for line in metrics.splitlines() if line.startswith("fusebox_queue_depth{")}
    assert depth["echo"] == 3 and depth["fallback"] == 0
    assert fleet.queued("echo") == 3
