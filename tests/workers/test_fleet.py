"""The breaker driving a real fleet: two echo workers and a fallback worker on Redis."""

from __future__ import annotations

import time

import pytest

from breaker import State
from workers.errors import InvalidInput, InvalidJob, JobFailed
from tests.support.fleet import Fleet, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def totals(fleet: Fleet) -> dict[str, int]:
    """The echo breaker's lifetime outcome counts (a reset keeps them)."""
    fleet.client.breakers.flush()
    return fleet.breaker("echo").snapshot().totals


def grew(before: dict[str, int], key: str, by: int, fleet: Fleet) -> bool:
    return bool(wait_for(lambda: totals(fleet).get(key, 0) - before.get(key, 0) == by, 5))


def paused_by(fleet: Fleet, epoch: int) -> set[str]:
    return {r["worker"] for r in fleet.control_log() if r["action"] == "pause" and r.get("epoch") == str(epoch)}


def resumed_after(fleet: Fleet, epoch: int) -> set[str]:
    """Workers that resumed in a state later than ``epoch`` (HALF_OPEN, or CLOSED already
    when the probes were quicker than the worker's loop)."""
    return {r["worker"] for r in fleet.control_log() if r["action"] == "resume" and int(r.get("epoch", -1)) > epoch}


def test_jobs_are_served_by_the_model(fleet: Fleet) -> None:
    handles = [fleet.client.submit_echo(f"job {i}") for i in range(6)]
    results = [h.get(timeout=30) for h in handles]
    assert [r.output["text"] for r in results] == [f"job {i}" for i in range(6)]
    assert all(r.served_by == "model" and not r.degraded and r.job_id == h.id for r, h in zip(results, handles))
    assert all(r.breaker_state == State.CLOSED for r in results)


def test_trip_pauses_every_worker_and_recovery_resumes_them(fleet: Fleet) -> None:
    fleet.use_policy("echo", minimum_calls=4, wait_in_open=2.0, permitted_calls_in_half_open=2)
    nodes = {w.nodename for w in fleet.workers if "model" in w.name}
    fleet.fault("echo", error_rate=1.0)

    # Failing calls are answered by the fallback under their own ids, until the trip.
    failed = []
    while fleet.state("echo") == State.CLOSED and len(failed) < 10:
        handle = fleet.client.submit_echo(f"fail {len(failed)}", route="model")
        result = handle.get(timeout=30)
        assert result.job_id == handle.id and result.degraded and result.served_by == "fallback:neutral"
        assert result.reason.startswith("model failed: InjectedFault")
        failed.append(result)
    assert fleet.state("echo") == State.OPEN and len(failed) == 4
    trip = fleet.breaker("echo").snapshot()

    # Every worker stops consuming.
    assert wait_for(lambda: paused_by(fleet, trip.epoch) == nodes, 5), fleet.control_log()
    for worker in fleet.workers:
        if "model" in worker.name:
            assert "echo" not in fleet.active_queues(worker)
    lags = [float(r["at"]) * 1000 - int(r["trigger_at_ms"]) for r in fleet.control_log()
            if r.get("epoch") == str(trip.epoch) and "trigger_at_ms" in r]
    print(f"\npause lag after the trip, per worker: {', '.join(f'{lag:.1f} ms' for lag in lags)}")

    # While OPEN, jobs sent to the model queue wait there; one with a deadline gets the fallback.
    waiting = [fleet.client.submit_echo(f"queued {i}", route="model") for i in range(3)]
    hurried = fleet.client.submit_echo("in a hurry", route="model", deadline=0.5)
    result = hurried.get(timeout=10)
    assert result.degraded and result.reason == "deadline passed while queued" and result.job_id == hurried.id
    assert all(h.status == "PENDING" for h in waiting)
    # The rerouted job's message stays queued (no broker's storage is parsed) until a
    # worker takes it and drops it unrun: checked below, after recovery.
    assert fleet.queued("echo") == 4

    # The model heals; the paused fleet's timer moves the breaker to HALF_OPEN; probes close it.
    fleet.clear_fault("echo")
    assert fleet.wait_state("echo", State.CLOSED, 15)
    results = [h.get(timeout=20) for h in waiting]
    assert sum(r.served_by == "model" for r in results) >= 2  # the probes, at least
    assert all(r.job_id == h.id for r, h in zip(results, waiting))
    assert wait_for(lambda: resumed_after(fleet, trip.epoch) == nodes, 5), fleet.control_log()

    # No model call started after the trip but the permitted probes: each call's ticket
    # carries the epoch of the state that admitted it.
    calls = fleet.model_calls("echo")
    assert wait_for(lambda: fleet.queued("echo") == 0, 10)
    assert hurried.get(timeout=5).served_by == "fallback:neutral"  # answered once, by the fallback
    assert hurried.id not in {c["job"] for c in fleet.model_calls("echo")}
    assert not [c for c in calls if int(c["epoch"]) == trip.epoch]  # OPEN admitted nothing
    probes = [c for c in calls if int(c["epoch"]) == trip.epoch + 1]
    assert len(probes) == 2 and {c["state"] for c in probes} == {"half_open"}

    after = fleet.client.submit_echo("healthy again").get(timeout=20)
    assert after.served_by == "model" and not after.degraded


def test_submitting_while_open_goes_straight_to_the_fallback(fleet: Fleet) -> None:
    fleet.breaker("echo").force_open(reason="drill")
    assert wait_for(lambda: fleet.client.breakers.get("echo").state == State.FORCED_OPEN, 5)
    handle = fleet.client.submit_echo("now please")
    assert handle.routed_to == "fallback"
    result = handle.get(timeout=20)
    assert result.degraded and result.reason == "breaker forced_open at submission"


def test_cached_answers_serve_the_fallback(fleet: Fleet) -> None:
    first = fleet.client.submit_echo("seen before").get(timeout=20)
    assert first.served_by == "model"
    fleet.breaker("echo").force_open()
    assert wait_for(lambda: fleet.client.breakers.get("echo").state == State.FORCED_OPEN, 5)
    again = fleet.client.submit_echo("seen before").get(timeout=20)
    assert again.served_by == "cache" and again.degraded and again.output == first.output


def test_a_worker_started_while_open_does_not_consume(fleet: Fleet) -> None:
    fleet.breaker("echo").force_open()
    late = fleet.start(["echo"], "late")
    try:
        # Only the bypass queue (whitelisted callers go past the breaker, whatever its state)
        # and the probe queue (jobs that come with a HALF_OPEN permit).
        assert fleet.active_queues(late) == ["echo.bypass", "echo.probe"]
        fleet.breaker("echo").reset()
        assert wait_for(lambda: sorted(fleet.active_queues(late)) == ["echo", "echo.bypass", "echo.probe"], 5)
    finally:
        late.stop()
        fleet.workers.remove(late)


def model_workers(fleet: Fleet) -> set[str]:
    return {w.nodename for w in fleet.workers if "model" in w.name}


def test_a_waiting_job_submitted_while_open_waits_in_the_paused_queue(fleet: Fleet) -> None:
    fleet.use_policy("echo", minimum_calls=1, wait_in_open=60.0)
    trip = fleet.breaker("echo").trip(reason="drill")
    # (A job sent within the millisecond before a worker's pause lands is taken, refused
    # at run time and parked instead. Here, wait for the pause.)
    assert wait_for(lambda: paused_by(fleet, trip.epoch) == model_workers(fleet), 5)
    handle = fleet.client.submit_echo("patient", wait=True)
    assert handle.routed_to == "model"  # not to the fallback: it asked to wait
    time.sleep(1.0)
    assert handle.status == "PENDING" and fleet.queued("echo") == 1
    fleet.breaker("echo").reset()
    result = handle.get(timeout=20)
    assert result.served_by == "model" and result.job_id == handle.id


def test_half_open_takes_only_probes_and_the_backlog_waits_in_the_queue(fleet: Fleet) -> None:
    # HALF_OPEN with one permit, held by a slowish probe: a waiting job sent meanwhile is
    # not taken off the paused queue (it was refused and parked before HALF_OPEN became
    # probe-only); it runs on the model once the probe closes the breaker.
    fleet.use_policy("echo", minimum_calls=1, wait_in_open=0.5, permitted_calls_in_half_open=1)
    trip = fleet.breaker("echo").trip()
    assert wait_for(lambda: paused_by(fleet, trip.epoch) == model_workers(fleet), 5)
    fleet.fault("echo", latency=0.6)  # below slow_call_duration (1 s): a healthy probe
    holder = fleet.client.submit_echo("takes the only permit", route="model")
    assert fleet.wait_state("echo", State.HALF_OPEN, 10)
    assert wait_for(lambda: fleet.queued("echo") == 0, 5)  # the pump took it, with the permit
    patient = fleet.client.submit_echo("waits its turn", route="model", wait=True)
    time.sleep(0.3)
    assert patient.status == "PENDING" and fleet.queued("echo") == 1
    assert fleet.db.hlen(f"{fleet.prefix}:parked:echo") == 0
    assert holder.get(timeout=20).served_by == "model"
    assert fleet.wait_state("echo", State.CLOSED, 5)
    result = patient.get(timeout=20)
    assert result.served_by == "model" and not result.degraded and result.job_id == patient.id
    probes = [c for c in fleet.model_calls("echo") if c["state"] == "half_open"]
    assert [c["job"] for c in probes] == [holder.id]


def test_when_the_fallback_cannot_answer_the_job_is_parked_then_rerun(fleet: Fleet) -> None:
    fleet.fault("fallback.echo", error_rate=1.0)
    fleet.breaker("echo").force_open()
    assert wait_for(lambda: fleet.client.breakers.get("echo").state == State.FORCED_OPEN, 5)
    handle = fleet.client.submit_echo("no one can answer now")
    assert wait_for(lambda: fleet.db.hlen(f"{fleet.prefix}:parked:echo") == 1, 10)
    assert wait_for(lambda: handle.status == "PARKED", 5)
    fleet.breaker("echo").reset()
    result = handle.get(timeout=20)
    assert result.served_by == "model" and result.job_id == handle.id
    assert fleet.db.hlen(f"{fleet.prefix}:parked:echo") == 0


def test_a_job_nothing_can_answer_fails_clearly_after_its_reruns(fleet: Fleet) -> None:
    fleet.use_policy("echo", minimum_calls=1000)  # keep the breaker out of it
    fleet.fault("echo", error_rate=1.0)
    fleet.fault("fallback.echo", error_rate=1.0)
    handle = fleet.client.submit_echo("poison")
    with pytest.raises(JobFailed, match="failed on this job after 3 reruns"):
        handle.get(timeout=60)


def test_a_hung_model_times_out_and_is_answered_by_the_fallback(fleet: Fleet) -> None:
    fleet.use_policy("echo", call_timeout=0.5, max_wait_in_half_open=5.0)
    fleet.fault("echo", hang=True)
    before = totals(fleet)
    started = time.monotonic()
    result = fleet.client.submit_echo("hang", route="model").get(timeout=20)
    assert result.degraded and result.reason.startswith("model timed out after 0.5")
    assert time.monotonic() - started < 10
    assert grew(before, "timeout", 1, fleet)


def test_out_of_memory_counts_as_a_failure(fleet: Fleet) -> None:
    fleet.fault("echo", oom_rate=1.0)
    before = totals(fleet)
    result = fleet.client.submit_echo("big", route="model").get(timeout=20)
    assert result.degraded and "MemoryError" in result.reason
    assert grew(before, "failure", 1, fleet)


def test_bad_input_is_a_clear_error_and_never_counts(fleet: Fleet) -> None:
    from workers.jobs import Job

    before = totals(fleet)
    with pytest.raises(InvalidInput, match="empty text"):
        fleet.client.submit_echo("   ")
    with pytest.raises(InvalidJob, match="unknown model"):
        fleet.client.submit("nope", text="x")
    app = fleet.client.app
    bad = {
        "not a job": "just a string",
        "wrong input kind": {"model": "echo", "payload": "0" * 64},
        "unknown option": Job(model="echo", text="x", options={"colour": "red"}).model_dump(mode="json"),
        "lone surrogate": {"model": "echo", "text": "bad \ud800 text"},
        "too long": {"model": "echo", "text": "x" * 10_001},
    }
    for label, body in bad.items():
        with pytest.raises((InvalidInput, InvalidJob)) as err:
            app.send_task("fusebox.echo", args=[body], queue="echo").get(timeout=20)
        assert str(err.value), label
    snap = fleet.breaker("echo").snapshot()
    assert snap.state == State.CLOSED and snap.window.calls == 0
    assert snap.totals == before  # refused before the breaker was asked: not even "ignored"


def test_a_whitelisted_caller_bypasses_an_open_breaker(fleet: Fleet) -> None:
    fleet.use_policy("echo", bypass_callers=("ops-console",))
    fleet.breaker("echo").force_open()
    assert wait_for(lambda: fleet.client.breakers.get("echo").state == State.FORCED_OPEN, 5)
    through = fleet.client.submit_echo("urgent", bypass="ops-console")
    assert through.routed_to == "model"
    answer = through.get(timeout=20)
    assert answer.served_by == "model" and not answer.degraded
    refused = fleet.client.submit_echo("urgent")
    assert refused.get(timeout=20).degraded
    with pytest.raises(InvalidJob, match="may not bypass"):
        fleet.client.submit_echo("urgent", bypass="someone-else")
