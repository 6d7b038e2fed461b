"""A process routes on the breaker state it has read, never on one it has not.

Before: right after `fusebox breaker force-open echo` (or `trip`), five fresh processes each
submitting one echo job sent all five to the paused model queue: `known_state()` answered
CLOSED until the first refresh. Every short-lived producer was hit (each `fusebox submit`
run, the first POST /jobs after `fusebox serve` starts, a cron job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.services import free_port
from tests.api.conftest import TOKEN, cli_env, fusebox_command
from tests.support.fleet import Fleet, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PRODUCER = """
import json, sys
from api.client import FuseboxClient
with FuseboxClient() as client:
    handle = client.submit_echo(sys.argv[1])
    result = handle.get(timeout=30)
    print(json.dumps({"id": handle.id, "routed_to": handle.routed_to, "job_id": result.job_id,
                      "degraded": result.degraded, "served_by": result.served_by}))
"""


@pytest.mark.parametrize("action", ["force-open", "trip"])
def test_fresh_producers_route_to_the_fallback_at_once(fleet: Fleet, action: str) -> None:
    env = cli_env(fleet)
    fleet.use_policy("echo", wait_in_open=120, max_wait_in_open=120)  # still OPEN when the producers run
    done = subprocess.run([*fusebox_command(), "breaker", action, "echo", "--reason", "drill"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    procs = [subprocess.Popen([sys.executable, "-c", PRODUCER, f"job {i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(5)]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        answers.append(json.loads(out.strip().splitlines()[-1]))
    assert [a["routed_to"] for a in answers] == ["fallback"] * 5
    for a in answers:
        assert a["degraded"] and a["served_by"].startswith("fallback") and a["job_id"] == a["id"]
    assert fleet.queued("echo") == 0  # nothing waits in the paused model queue


def test_one_fusebox_submit_run_routes_to_the_fallback(fleet: Fleet, tmp_path: Path) -> None:
    fleet.breaker("sentiment").force_open(reason="drill")
    texts = tmp_path / "texts.txt"
    texts.write_text("质量很好\n太差了\n还可以\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = subprocess.run([*fusebox_command(), "submit", str(texts), "--model", "sentiment", "--out", str(out),
                           "--timeout", "60"], env=cli_env(fleet), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 3, records
    assert all(r["degraded"] and r["served_by"].startswith("fallback") for r in ok), ok
    assert fleet.queued("sentiment") == 0


def test_the_first_job_after_serve_starts_routes_to_the_fallback(fleet: Fleet) -> None:
    fleet.use_policy("echo", wait_in_open=120, max_wait_in_open=120)
    fleet.breaker("echo").trip(reason="drill")
    port = free_port()
    server = subprocess.Popen([*fusebox_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=cli_env(fleet, FUSEBOX_API_TOKEN=TOKEN), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30), "fusebox serve did not start"
        reply = httpx.post(f"{base}/jobs", json={"model": "echo", "text": "first"}, timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code in (200, 201, 202), reply.text
        job = reply.json()
        assert job["routed_to"] == "fallback", job
        result = wait_for(lambda: (r := httpx.get(f"{base}/jobs/{job['job_id']}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()).get("result") and r,
                          30)
        assert result and result["result"]["degraded"], result
    finally:
        server.terminate()
        server.wait(10)
