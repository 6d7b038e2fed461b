"""How a paused backlog comes back: probe-only HALF_OPEN and slow start, against today's
behaviour (HALF_OPEN resumes every worker, no slow start), measured in the same run.

    python -m benchmarks.recovery [--json] [--backlog N] [--plot PATH]

Each side runs the same drill on a Redis and a fleet of its own (2 echo workers with 4
pool processes each, and a fallback worker): the echo model fails, its breaker trips and
the fleet pauses; ``--backlog`` jobs without a deadline and a few with a 1 s deadline queue
up behind the trip; then the fault goes off and what comes back is a cold model: every call
takes 50 ms, its first 8 calls 0.2 s more, and a warm-up call that starts while more than 2
are in flight fails with an out-of-memory error, as a model still loading onto its GPU
would. The policy is the drill's (2 probes) with the default 5 s slow start. Figures per side:

- ``backlog_served_by_model_ratio``: of the jobs without deadline, the share answered by
  the model (target >= 0.95 with probe-only HALF_OPEN);
- ``drain_seconds``: from the fault going off to the last backlog answer;
- ``peak_concurrency_first_second_after_close``: most model calls in flight during the
  first second of traffic after the probes closed the breaker, against
  ``fleet_concurrency``;
- ``retrips``: transitions to OPEN after the fault went off (target 0 with slow start);
- ``half_open_jobs_taken_max``: most jobs that left the model queue during one HALF_OPEN
  (target: the probe count);
- ``ramp_violations``: model calls that started while more calls were in flight than the
  ramp allowed (target 0).

``--plot PATH`` draws the probe-only side's timeline (queue length, calls in flight and the
ramp's limit, breaker state) with matplotlib: the picture in docs/workers.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from breaker import BreakerPolicy, State
from breaker.keyspace import Keyspace
from breaker.ramp import ramp_limit
from tests.support.waiting import wait_for
from workers.broker import PRIORITY_STEPS
from workers.faults import SWITCH_TTL, FaultSpec

MODEL = "echo"
# The Redis lists kombu keeps the model's queue in: one per message priority (the
# jobs are sent with priorities, so the plain list alone is not the queue).
QUEUE_LISTS = [MODEL] + [f"{MODEL}\x06\x16{p}" for p in PRIORITY_STEPS if p]
PROBES = 2

#: The drill's policy: trips fast, waits 3 s in OPEN, 2 probes, a 3 s slow start.
DRILL_POLICY = dict(
    minimum_calls=4, failure_rate_threshold=0.5, slow_call_duration=1.0, slow_call_rate_threshold=0.5,
    window=10, wait_in_open=3.0, max_wait_in_open=3.0, permitted_calls_in_half_open=PROBES,
    max_wait_in_half_open=10.0, call_timeout=2.0, slow_start=3.0,
)
#: The cold model after the outage: its first 16 calls take 60 ms each, or 1.2 s (slow, not
#: timed out) when more than 2 run at once.
WARMUP = FaultSpec(warmup_calls=16, warmup_capacity=2, warmup_base=0.06, warmup_latency=1.2)


class DrillFleet(Protocol):
    """What the drill needs of a fleet (tests.support.fleet.Fleet and BenchFleet both fit)."""

    client: Any
    db: redis.Redis
    prefix: str
    workers: list[Any]

    def control_log(self) -> list[dict[str, str]]: ...


@dataclass
class Sample:
    at: float
    state: str
    queued: int
    ramp_limit: int | None
    ramp_started: float | None = None


@dataclass
class DrillRun:
    """What one drill saw.

    Parameters:
      backlog / hurried: the results of the jobs without and with a deadline.
      fault_off_at: wall time the fault went off.
      drained_at: wall time every backlog job had its answer.
      samples: breaker state and queue length, read together every 20 ms.
      transitions: the breaker's transitions (wall time in seconds, from, to).
      calls / ends: the call trace's starts (job, wall time, ticket state and epoch) and
        ends (job, wall time).
      slow_start: the policy's slow start, seconds.
      probes: the policy's probe count.
    """

    backlog: list[Any] = field(default_factory=list)
    hurried: list[Any] = field(default_factory=list)
    fault_off_at: float = 0.0
    drained_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    transitions: list[tuple[float, str, str]] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)
    ends: list[dict[str, str]] = field(default_factory=list)
    slow_start: float = 0.0
    probes: int = PROBES

    # -- derived figures ----------------------------------------------------------------------

    def intervals(self) -> list[tuple[float, float]]:
        """(start, end) of every model call, matched by job id in order."""
        ends: dict[str, list[float]] = {}
        for e in self.ends:
            ends.setdefault(e["job"], []).append(float(e["at"]))
        out = []
        for c in self.calls:
            pending = ends.get(c["job"])
            end = pending.pop(0) if pending else float("inf")
            out.append((float(c["at"]), end))
        return out

    def in_flight(self, at: float) -> int:
        return sum(1 for start, end in self.intervals() if start <= at < end)

    def closed_at(self) -> float | None:
        """When the probes closed the breaker after the fault went off."""
        for at, frm, to in self.transitions:
            if at >= self.fault_off_at and frm == State.HALF_OPEN and to == State.CLOSED:
                return at
        return None

    def retrips(self) -> int:
        return sum(1 for at, _frm, to in self.transitions if at >= self.fault_off_at and to == State.OPEN)

    def ramp_started(self) -> float | None:
        """When the ramp after the recovery began (its first slot), as the store said."""
        closed = self.closed_at()
        if closed is None:
            return None
        seen = [s.ramp_started for s in self.samples if s.at >= closed and s.ramp_started is not None]
        return seen[-1] if seen else None

    def ramp_violations(self) -> int:
        """Calls that started while more calls were in flight than the ramp allowed."""
        began = self.ramp_started()
        if began is None or self.slow_start <= 0:
            return 0
        intervals = self.intervals()
        bad = 0
        for start, _end in intervals:
            limit = ramp_limit(self.probes, int((start - began) * 1000), int(self.slow_start * 1000))
            if start < began or limit is None:
                continue
            if sum(1 for s, e in intervals if s <= start < e) > limit:
                bad += 1
        return bad

    def peak_after_close(self, window: float = 1.0) -> int:
        """Most calls in flight during the first ``window`` seconds of traffic after the
        probes closed the breaker (from the first call that is not a probe: resuming a
        queue takes the Redis transport up to a second, its BRPOP cycle)."""
        closed = self.closed_at()
        if closed is None:
            return 0
        intervals = self.intervals()
        first = min((s for s, _ in intervals if s >= closed), default=closed)
        points = [first] + [s for s, _ in intervals if first <= s < first + window]
        return max(sum(1 for s, e in intervals if s <= p < e) for p in points)

    def half_open_taken(self) -> list[int]:
        """Per HALF_OPEN period: how many jobs left the model queue during it, from the
        queue length sampled with the state in one step (against the last sample before)."""
        taken: list[int] = []
        before: int | None = None
        low: int | None = None
        for previous, s in zip(self.samples, self.samples[1:]):
            if s.state == State.HALF_OPEN:
                if previous.state != State.HALF_OPEN:
                    before, low = previous.queued, s.queued
                low = s.queued if low is None else min(low, s.queued)
            elif previous.state == State.HALF_OPEN and before is not None and low is not None:
                taken.append(before - low)
                before = low = None
        if before is not None and low is not None:
            taken.append(before - low)
        return taken

    def figures(self, fleet_concurrency: int) -> dict[str, Any]:
        model_served = sum(1 for r in self.backlog if r.served_by == "model")
        return {
            "backlog_jobs": len(self.backlog),
            "backlog_served_by_model_ratio": round(model_served / max(1, len(self.backlog)), 3),
            "hurried_jobs": len(self.hurried),
            "hurried_served_by_fallback": sum(1 for r in self.hurried if r.degraded),
            "drain_seconds": round(self.drained_at - self.fault_off_at, 2),
            "peak_concurrency_first_second_after_close": self.peak_after_close(),
            "fleet_concurrency": fleet_concurrency,
            "retrips": self.retrips(),
            "half_open_jobs_taken_max": max(self.half_open_taken(), default=0),
            "ramp_violations": self.ramp_violations(),
        }


class _Sampler(threading.Thread):
    def __init__(self, fleet: DrillFleet, run: DrillRun) -> None:
        super().__init__(daemon=True)
        self.fleet, self.run_ = fleet, run
        self.stop = threading.Event()

    def run(self) -> None:
        state_key = Keyspace(self.fleet.prefix).breaker_state(MODEL)
        breakers = self.fleet.client.breakers
        while not self.stop.is_set():
            with self.fleet.db.pipeline(transaction=True) as pipe:
                pipe.hget(state_key, "state")
                for name in QUEUE_LISTS:
                    pipe.llen(name)
                state, *lengths = pipe.execute()
            queued = sum(lengths)
            try:
                ramp = breakers.ramp(MODEL, "status")
                limit, started = ramp.limit, (ramp.started_ms / 1000 if ramp.active and ramp.started_ms else None)
            except Exception:  # noqa: BLE001 - a sample without the ramp
                limit, started = None, None
            self.run_.samples.append(Sample(time.time(), (state or b"closed").decode(), int(queued), limit, started))
            self.stop.wait(0.02)


def drill(fleet: DrillFleet, backlog: int = 120, hurried: int = 5, warmup: FaultSpec | None = WARMUP,
          **policy: Any) -> DrillRun:
    """One outage and recovery of the echo model on ``fleet``; see the module.

    Parameters:
      fleet: a running fleet of echo workers and a fallback worker, breakers reset.
      backlog: jobs without deadline queued behind the trip.
      hurried: jobs with a 1 s deadline queued behind the trip.
      warmup: the fault the model has after the outage (None: it comes back warm).
      policy: changes to :data:`DRILL_POLICY`.
    """
    from workers.faults import Faults

    faults = Faults(fleet.db, fleet.prefix)
    breaker = fleet.client.breakers.get(MODEL)
    chosen = BreakerPolicy.model_validate({**breaker.configured_policy.model_dump(), **DRILL_POLICY, **policy})
    breaker.set_policy(chosen)
    run = DrillRun(slow_start=chosen.slow_start, probes=chosen.permitted_calls_in_half_open)
    started_at = time.time()

    faults.set(MODEL, FaultSpec(error_rate=1.0))
    time.sleep(SWITCH_TTL + 0.05)
    while breaker.snapshot().state == State.CLOSED:
        fleet.client.submit_echo("failing", route="model").get(timeout=30)
    trip_epoch = breaker.snapshot().epoch
    # The backlog queues up behind the trip once every worker has paused.
    consumers = sum(1 for w in fleet.workers if MODEL in w.queues)
    paused = lambda: {r["worker"] for r in fleet.control_log()  # noqa: E731
                      if r["action"] == "pause" and r.get("epoch") == str(trip_epoch)}
    if not wait_for(lambda: len(paused()) == consumers, 5):
        raise RuntimeError("not every worker paused after the trip")
    wait_for(lambda: not fleet.db.hlen(fleet.settings.broker_keys + "unacked"), 5)  # jobs in flight at the trip are answered

    sampler = _Sampler(fleet, run)
    sampler.start()
    waiting = [fleet.client.submit_echo(f"backlog {i}", route="model") for i in range(backlog)]
    hurrying = [fleet.client.submit_echo(f"hurried {i}", route="model", deadline=1.0) for i in range(hurried)]
    run.hurried = [h.get(timeout=30) for h in hurrying]

    # The fault goes off while the breaker is still OPEN: what comes back is a cold model.
    if breaker.snapshot().state != State.OPEN or breaker.snapshot().epoch != trip_epoch:
        raise RuntimeError("the drill's outage ended before the backlog was queued; lengthen wait_in_open")
    if warmup is not None:
        faults.set(MODEL, warmup)
    else:
        faults.clear(MODEL)
    run.fault_off_at = time.time()
    run.backlog = [h.get(timeout=180) for h in waiting]
    run.drained_at = time.time()
    time.sleep(1.0)  # the tail of the picture
    sampler.stop.set()
    sampler.join(5)
    faults.clear(MODEL)

    for event in fleet.client.breakers.history(MODEL, count=500):
        if event.kind == "transition" and event.at_ms / 1000 >= started_at:
            run.transitions.append((event.at_ms / 1000, str(event.from_state), str(event.to_state)))
    key = f"{fleet.prefix}:model-calls:{MODEL}"
    decode = lambda entries: [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]  # noqa: E731
    run.calls = [c for c in decode(fleet.db.xrange(key)) if float(c["at"]) >= run.fault_off_at - 10]
    run.ends = decode(fleet.db.xrange(f"{key}:ends"))
    return run


def plot(run: DrillRun, path: str) -> None:
    """Draws one recovery: queue length, calls in flight with the ramp's limit, and the
    breaker's state, against seconds since the fault went off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = run.fault_off_at
    xs = [s.at - t0 for s in run.samples]
    fig, (ax_q, ax_c) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), height_ratios=[1, 1])
    colours = {"open": "#f4c7c3", "half_open": "#fce8b2", "closed": "#d9ead3"}
    for ax in (ax_q, ax_c):
        start = 0
        for i in range(1, len(run.samples) + 1):
            if i == len(run.samples) or run.samples[i].state != run.samples[start].state:
                end_x = xs[i] if i < len(xs) else xs[-1]
                ax.axvspan(xs[start], end_x, color=colours.get(run.samples[start].state, "#eeeeee"), lw=0)
                start = i
    ax_q.plot(xs, [s.queued for s in run.samples], color="#1f4e79", lw=1.6)
    ax_q.set_ylabel("jobs in the\nmodel queue")
    inflight = [run.in_flight(s.at) for s in run.samples]
    ax_c.step(xs, inflight, where="post", color="#1f4e79", lw=1.4, label="model calls in flight")
    ax_c.step(xs, [s.ramp_limit if s.ramp_limit is not None else float("nan") for s in run.samples], where="post",
              color="#c0504d", lw=1.2, ls="--", label="slow-start limit")
    ax_c.set_ylabel("calls in flight")
    ax_c.set_xlabel("seconds since the fault went off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax_q.legend(handles, ["OPEN", "HALF_OPEN", "CLOSED"], loc="upper right", ncol=3, fontsize=8)
    ax_c.legend(loc="upper right", fontsize=8)
    ax_q.set_title(f"One recovery: {len(run.backlog)} queued jobs, {run.probes} probes, {run.slow_start:g} s slow start "
                   "(real workers, real Redis)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: What comes back after the benchmark's outage: a cold model that runs out of memory when
#: more than 2 of its first 8 calls run at once.
BENCH_MODEL = FaultSpec(latency=0.05, warmup_calls=8, warmup_capacity=2, warmup_base=0.2, warmup_overload="oom")


def side(mode: str, backlog: int, concurrency: int, workers: int) -> tuple[DrillRun, dict[str, Any]]:
    """One side of the comparison on a fleet of its own: ``probes`` (probe-only HALF_OPEN,
    slow start) or ``all`` (HALF_OPEN resumes every worker, no slow start)."""
    from benchmarks._fleet import BenchFleet

    env = {"FUSEBOX_TRACE_MODEL_CALLS": "1", "FUSEBOX_PRELOAD": "none", "FUSEBOX_HALF_OPEN_CONSUMPTION": mode}
    with BenchFleet(**env) as fleet:
        for i in range(workers):
            fleet.start([MODEL], f"model-{i}", concurrency=concurrency)
        fleet.start(["fallback"], "cpu", concurrency=2)
        run = drill(fleet, backlog=backlog, warmup=BENCH_MODEL,
                    slow_start=BreakerPolicy().slow_start if mode == "probes" else 0.0)
        return run, run.figures(concurrency * workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--backlog", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--plot", help="draw the probe-only side's timeline to this PNG")
    args = parser.parse_args(argv)
    run, fusebox = side("probes", args.backlog, args.concurrency, args.workers)
    if args.plot:
        plot(run, args.plot)
    _, today = side("all", args.backlog, args.concurrency, args.workers)
    result: dict[str, Any] = {**fusebox, "baseline": today}
    result["target_ratio_met"] = fusebox["backlog_served_by_model_ratio"] >= 0.95
    result["target_retrips_met"] = fusebox["retrips"] == 0
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
