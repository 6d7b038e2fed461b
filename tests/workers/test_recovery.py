"""Recovery with real workers on a real Redis: probe-only HALF_OPEN keeps the backlog for the
model, slow start ramps the fleet back, and a probe hung in C code never lets more than the
permitted probes run at once (scenario 6 of the breaker review)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from benchmarks.recovery import DrillRun, drill
from breaker import Outcome, State
from tests.support.fleet import Fleet, fresh, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROBES = 2


@pytest.fixture(scope="module")
def recovery_fleet() -> Iterator[Fleet]:
    """Two echo workers with three pool processes each (so that more calls than the
    probes, or than a ramp step, could run at once), and a fallback worker."""
    fleet = Fleet()
    fleet.start(["echo"], "model-a", concurrency=3)
    fleet.start(["echo"], "model-b", concurrency=3)
    fleet.start(["fallback"], "cpu", concurrency=2)
    yield fleet
    fleet.close()


@pytest.fixture
def fleet(recovery_fleet: Fleet) -> Iterator[Fleet]:
    yield from fresh(recovery_fleet)


def test_the_backlog_waits_for_the_model_and_comes_back_through_the_ramp(fleet: Fleet) -> None:
    run: DrillRun = drill(fleet, backlog=100, hurried=4, permitted_calls_in_half_open=PROBES, slow_start=3.0)

    # Every job answered, none lost; the patient ones by the model, the hurried ones by the
    # fallback (their deadline passed while they were queued).
    assert len(run.backlog) == 100 and len(run.hurried) == 4
    assert [r.served_by for r in run.backlog] == ["model"] * 100, [r.reason for r in run.backlog if r.degraded]
    assert all(r.degraded and r.reason == "deadline passed while queued" for r in run.hurried)
    assert fleet.queued("echo") == 0 and fleet.queued("echo.probe") == 0

    # HALF_OPEN took exactly the probes off the queue: counted on the queue, sampled with
    # the breaker's state in one step, and on the model calls.
    assert run.half_open_taken() and max(run.half_open_taken()) <= PROBES, run.half_open_taken()
    half_open_calls = [c for c in run.calls if c["state"] == State.HALF_OPEN]
    assert len(half_open_calls) == PROBES, (run.fault_off_at, run.transitions, half_open_calls)
    assert run.retrips() == 0  # the warm-up was absorbed by the ramp

    # The ramp: at no call's start were more calls in flight than its limit allowed, and
    # the first second after the close stayed far below the fleet's six processes.
    closed = run.closed_at()
    assert closed is not None
    ramp_starts = [s for s, _ in run.intervals() if closed <= s < closed + run.slow_start]
    assert len(ramp_starts) > 10  # the ramp was exercised, not skipped
    assert run.ramp_violations() == 0
    assert run.peak_after_close() <= 2 * PROBES
    # ... and it did grow: the limit read from Redis during the ramp went past the probe
    # count (how many calls then ran at once depends on how fast a loaded machine drains
    # the backlog, so that is not asserted).
    limits = [s.ramp_limit for s in run.samples if s.at >= closed and s.ramp_limit is not None]
    assert limits and max(limits) > PROBES, limits


def test_a_probe_hung_in_c_code_is_killed_before_its_permit_lapses(fleet: Fleet) -> None:
    # max_wait_in_half_open 5 s: without a hard limit bound to it, a stalled probe (signals
    # masked, deaf to the call timeout) would run to the worker's 300 s limit while its
    # permit is reclaimed after 5 s and new probes join it.
    fleet.use_policy("echo", minimum_calls=2, wait_in_open=1.0, max_wait_in_open=1.0,
                     permitted_calls_in_half_open=PROBES, call_timeout=1.0, max_wait_in_half_open=5.0,
                     slow_start=0.0)
    before = fleet.breaker("echo").snapshot().totals
    trip = fleet.breaker("echo").trip(reason="drill")
    assert wait_for(lambda: len({r["worker"] for r in fleet.control_log()
                                 if r["action"] == "pause" and r.get("epoch") == str(trip.epoch)}) == 2, 5)
    fleet.fault("echo", stall=True)
    handles = [fleet.client.submit_echo(f"stuck {i}", route="model") for i in range(6)]

    # The first probes stall; the pool kills them at their hard limit (4 s, under the
    # permit's 5 s) and the main process records each timeout on the probe's own permit:
    # the probes fail and the breaker opens again.
    first_half_open = trip.epoch + 1
    assert wait_for(lambda: any(e.kind == "transition" and e.epoch == first_half_open + 1
                                for e in fleet.client.breakers.history("echo", 50)), 20)
    reopened = next(e for e in fleet.client.breakers.history("echo", 50)
                    if e.kind == "transition" and e.epoch == first_half_open + 1)
    assert reopened.from_state == State.HALF_OPEN and reopened.to_state == State.OPEN
    assert reopened.reason == f"probe failure rate 100.0% >= 50.0% over {PROBES} calls"
    fleet.clear_fault("echo")

    results = [h.get(timeout=60) for h in handles]
    killed = [r for r in results if r.reason and r.reason.startswith("model hung: process killed after the 4.0s")]
    assert len(killed) >= PROBES
    assert all(r.served_by == "model" for r in results if r not in killed)
    fleet.client.breakers.flush()
    totals = fleet.breaker("echo").snapshot().totals
    assert totals.get("reclaimed", 0) == before.get("reclaimed", 0)  # no permit lapsed under a live probe
    assert totals.get("stale", 0) == before.get("stale", 0)  # every timeout found its permit
    assert totals.get("timeout", 0) - before.get("timeout", 0) == len(killed)

    # At no instant were more model calls in flight than the probe count while HALF_OPEN.
    run = DrillRun(calls=fleet.model_calls("echo"), ends=[
        {k.decode(): v.decode() for k, v in f.items()} for _, f in fleet.db.xrange(f"{fleet.prefix}:model-calls:echo:ends")])
    hung = [(s, e) for (s, e), c in zip(run.intervals(), run.calls) if c["state"] == State.HALF_OPEN]
    assert len(hung) >= PROBES and all(e != float("inf") for _, e in hung)
    assert max(sum(1 for s2, e2 in hung if s2 <= s < e2) for s, _ in hung) <= PROBES
    # Each HALF_OPEN epoch ran exactly its permitted probes.
    per_epoch: dict[str, int] = {}
    for c in run.calls:
        if c["state"] == State.HALF_OPEN:
            per_epoch[c["epoch"]] = per_epoch.get(c["epoch"], 0) + 1
    assert set(per_epoch.values()) == {PROBES}


def test_the_ramp_is_shown_by_the_cli_http_and_metrics(fleet: Fleet) -> None:
    from rich.console import Console

    from api.cli.breakers import breakers_table
    from api.metrics import FuseboxCollector
    from api.views import snapshot_json
    from tests.api.conftest import cli_env, fusebox_command

    # A recovery by hand: the ramp is armed in HALF_OPEN (as the probe pump does) and runs
    # once the probes close the breaker.
    fleet.use_policy("echo", minimum_calls=1, wait_in_open=0.2, max_wait_in_open=0.2, permitted_calls_in_half_open=PROBES,
                     slow_start=60.0)
    breakers = fleet.client.breakers
    breakers.get("echo").trip()
    assert fleet.wait_state("echo", State.HALF_OPEN, 10)  # the paused workers' timer moved it
    probes = [breakers.get("echo").admit() for _ in range(PROBES)]
    breakers.ramp("echo", "arm", str(probes[0].epoch))  # (a worker's pump may have armed it already)
    for ticket in probes:
        breakers.get("echo").record(ticket, Outcome.SUCCESS, 0.01, wait=True)
    assert fleet.state("echo") == State.CLOSED
    assert breakers.ramp("echo", "acquire", "a-call").slot  # one call in flight

    result = subprocess.run([*fusebox_command(), "breakers", "--json"], env=cli_env(fleet), capture_output=True,
                            text=True, timeout=120)
    shown = {b["name"]: b for b in json.loads(result.stdout)["breakers"]}["echo"]
    assert shown["ramp"]["active"] and shown["ramp"]["text"] == f"recovering: 1 of {PROBES} slots"
    assert snapshot_json(breakers.get("echo").snapshot(), breakers.ramp("echo"))["ramp"]["limit"] == PROBES
    console = Console(width=200, record=True)
    console.print(breakers_table([breakers.get("echo").snapshot()], {"echo": breakers.ramp("echo")}))
    assert f"recovering: 1 of {PROBES} slots" in console.export_text()
    metrics = {m.name: m for m in FuseboxCollector(breakers, fleet.db, fleet.settings).collect()}
    assert [s.value for s in metrics["fusebox_breaker_ramp_limit"].samples] == [PROBES]
    assert [s.value for s in metrics["fusebox_breaker_ramp_in_flight"].samples] == [1]
    breakers.ramp("echo", "release", "a-call")


def test_an_operators_cancel_consumer_holds_and_add_consumer_cannot_override_the_breaker(fleet: Fleet) -> None:
    worker = next(w for w in fleet.workers if w.name.startswith("model-a"))
    app = fleet.client.app
    app.control.cancel_consumer("echo", destination=[worker.nodename], reply=True, timeout=5)
    time.sleep(0.5)  # five consumption checks later
    assert "echo" not in fleet.active_queues(worker)  # the operator's pause holds
    app.control.add_consumer("echo", destination=[worker.nodename], reply=True, timeout=5)
    assert wait_for(lambda: "echo" in fleet.active_queues(worker), 5)

    fleet.breaker("echo").force_open(reason="drill")
    assert wait_for(lambda: "echo" not in fleet.active_queues(worker), 5)
    app.control.add_consumer("echo", destination=[worker.nodename], reply=True, timeout=5)
    assert wait_for(lambda: "echo" not in fleet.active_queues(worker), 5)  # the breaker decides
    fleet.breaker("echo").reset()
    assert wait_for(lambda: "echo" in fleet.active_queues(worker), 5)
