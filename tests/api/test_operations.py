"""Operator conventions through the installed ``fusebox`` script and the HTTP API, against
a real Redis (breakers and fault switches live there; no worker is needed): ``--json`` on
every verb that prints, with HTTP's shapes and event order; one line and exit 1 when the
breaker store fails; fault switches that expire, and their HTTP endpoints."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http import create_app
from tests.support.redis_server import RedisServer
from tests.api.conftest import CHAOS_TOKEN, TOKEN, cli_env, fusebox_command
from tests.support.fleet import Fleet, wait_for
from workers.faults import FaultSpec

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {CHAOS_TOKEN}"}


@pytest.fixture(scope="module")
def store() -> Iterator[Fleet]:
    """A Redis and a client of their own, and no worker."""
    fleet = Fleet()
    yield fleet
    fleet.close()


@pytest.fixture
def http(store: Fleet) -> Iterator[TestClient]:
    store.reset()
    with TestClient(create_app(store.settings.model_copy(update={"api_token": TOKEN, "api_chaos_token": CHAOS_TOKEN}),
                               client=store.client)) as client:
        yield client


def fusebox(fleet: Fleet, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fusebox_command(), *args], env=cli_env(fleet, **env), capture_output=True, text=True,
                          timeout=120)


def cli_json(fleet: Fleet, *args: str) -> dict:
    result = fusebox(fleet, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_printing_verb_has_json_shaped_as_http(store: Fleet, http: TestClient) -> None:
    over_http = http.post("/breakers/echo/trip", params={"reason": "http trip"}, headers=AUTH).json()
    for verb, state in (("reset", "closed"), ("force-open", "forced_open"), ("disable", "disabled"),
                        ("metrics-only", "metrics_only"), ("trip", "open")):
        data = cli_json(store, "breaker", verb, "echo", "--reason", f"cli {verb}")
        assert set(data) == set(over_http) == {"event", "breaker"}
        assert set(data["breaker"]) == set(over_http["breaker"]) and set(data["event"]) == set(over_http["event"])
        assert data["breaker"]["state"] == state and data["event"]["reason"] == f"cli {verb}"

    policy = cli_json(store, "breaker", "set", "echo", "--minimum-calls", "7")
    live = ("retry_after", "now_ms")
    assert policy == {**http.get("/breakers/echo").json(), **{k: policy[k] for k in live}}
    assert policy["policy"]["minimum_calls"] == 7
    cleared = cli_json(store, "breaker", "clear-policy", "echo")
    assert cleared["policy"]["minimum_calls"] != 7

    # The same events in the same order (newest first) as GET /events.
    cli_events = cli_json(store, "breaker", "history", "echo", "--count", "8")["events"]
    http_events = http.get("/events", params={"breaker": "echo", "count": 8}).json()["events"]
    assert [e["epoch"] for e in cli_events] == [e["epoch"] for e in http_events]
    stamps = [e["at_ms"] for e in cli_events if e["kind"] == "transition"]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] > stamps[-1]
    assert any(e["reason"] == "cli trip" for e in cli_events)

    listing, over_http_listing = cli_json(store, "breakers"), http.get("/breakers").json()
    assert set(listing) == set(over_http_listing) == {"breakers", "store", "at"}
    assert [b["name"] for b in listing["breakers"]] == [b["name"] for b in over_http_listing["breakers"]]

    chaos = cli_json(store, "chaos", "echo", "--error-rate", "0.5")
    assert chaos == {**http.get("/chaos/echo").json(), "expires_in": chaos["expires_in"]}
    assert chaos["active"] and chaos["fault"] == {"error_rate": 0.5}
    assert cli_json(store, "chaos", "echo", "--off")["active"] is False


@pytest.fixture
def broken_store() -> Iterator[RedisServer]:
    """A Redis that answers PING but refuses the breakers' Lua scripts: every operator
    action then fails in the breaker store (StoreUnavailable), after the CLI's own check."""
    with RedisServer(extra_args=["--rename-command", "EVALSHA", "", "--rename-command", "EVAL", ""]) as server:
        yield server


@pytest.mark.parametrize("args", [("breaker", "trip", "ocr"), ("breaker", "reset", "ocr", "--json"),
                                  ("breaker", "force-open", "ner", "--reason", "x")])
def test_store_unavailable_is_one_line_and_exit_1(store: Fleet, broken_store: RedisServer, args: tuple[str, ...]) -> None:
    result = fusebox(store, *args, FUSEBOX_REDIS_URL=broken_store.url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "breaker store unavailable" in lines[0], result.stderr


def test_fault_switches_expire_and_for_sets_how_long(store: Fleet) -> None:
    default = cli_json(store, "chaos", "echo", "--latency", "1")
    assert 590 <= default["expires_in"] <= 600  # minutes by default, not forever
    assert 0 < store.faults.remaining("echo") <= 600

    short = cli_json(store, "chaos", "echo", "--error-rate", "1", "--for", "1s")
    assert short["active"] and 0 < short["expires_in"] <= 1
    assert wait_for(lambda: not store.faults.get("echo").active, 15)  # it turned itself off
    assert cli_json(store, "chaos", "ner", "--hang", "--for", "2h", "--fallback")["expires_in"] > 7000
    store.faults.clear("fallback.ner")

    for bad in ("0", "-5m", "nan", "25h", "soon"):
        result = fusebox(store, "chaos", "echo", "--error-rate", "1", "--for", bad)
        assert result.returncode == 2 and "--for" in result.stderr and "Traceback" not in result.stderr, bad
    assert not store.faults.get("echo").active


def test_chaos_over_http_behind_the_operator_token(store: Fleet, http: TestClient) -> None:
    assert http.post("/chaos/echo", json={"error_rate": 1.0}).status_code == 401
    assert http.delete("/chaos/echo").status_code == 401
    # The token that submits jobs does not turn faults on (issue 26, finding 4).
    assert http.post("/chaos/echo", json={"error_rate": 1.0}, headers=AUTH).status_code == 401
    assert http.delete("/chaos/echo", headers=AUTH).status_code == 401
    assert not store.faults.get("echo").active
    response = http.post("/chaos/echo", json={"error_rate": 1.0, "for_seconds": 120}, headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json()["active"] and 0 < response.json()["expires_in"] <= 120
    assert store.faults.get("echo") == FaultSpec(error_rate=1.0)

    response = http.post("/chaos/ocr", json={"latency": 2, "fallback": True}, headers=OPERATOR)
    assert response.json()["target"] == "fallback.ocr" and store.faults.get("fallback.ocr") == FaultSpec(latency=2)
    assert 590 <= response.json()["expires_in"] <= 600

    for body in ({}, {"error_rate": 2}, {"error_rate": 1, "for_seconds": 0}, {"latency": 1, "for_seconds": 1e9},
                 {"error_rate": 1, "colour": "red"}):
        assert http.post("/chaos/echo", json=body, headers=OPERATOR).status_code == 422, body
    nan = http.post("/chaos/echo", content=b'{"error_rate": 1, "for_seconds": NaN}',
                    headers={**OPERATOR, "Content-Type": "application/json"})
    assert nan.status_code == 422, nan.text
    assert http.post("/chaos/nosuch", json={"error_rate": 1}, headers=OPERATOR).status_code == 404

    assert http.delete("/chaos/echo", headers=OPERATOR).json()["active"] is False
    assert http.delete("/chaos/ocr", params={"fallback": True}, headers=OPERATOR).json()["active"] is False
    assert not store.faults.get("echo").active and not store.faults.get("fallback.ocr").active
