"""How fast a trip stops the fleet consuming, against Celery's own broadcast.

    python -m benchmarks.pause_propagation [--json] [--workers N] [--rounds R]

On a Redis of its own, N echo workers consume while a producer keeps sending jobs to the
model queue. Each round trips the breaker (OPEN, with a wait longer than the round) and
measures, per worker, the time from the transition (Redis time of the event) to that
worker's consumer being cancelled (its control record); then resets. In the same run, the
baseline: ``app.control.cancel_consumer(..., reply=True)`` from the operator's side, timed
until every worker has replied that it cancelled (then ``add_consumer`` puts it back).

``model_calls_after_trip`` counts model calls admitted in an OPEN epoch: the target is 0
(OPEN admits nothing; probes only ever run in HALF_OPEN). Target: pause p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from benchmarks._fleet import BenchFleet
from benchmarks._stats import percentile
from breaker import BreakerPolicy, State


def run(workers: int, rounds: int) -> dict[str, Any]:
    with BenchFleet(FUSEBOX_TRACE_MODEL_CALLS="1", FUSEBOX_PRELOAD="none") as fleet:
        nodes = [fleet.start(["echo"], f"model-{i}").nodename for i in range(workers)]
        fleet.start(["fallback"], "cpu")
        breaker = fleet.client.breakers.get("echo")
        breaker.set_policy(BreakerPolicy.model_validate(
            {**breaker.configured_policy.model_dump(), "wait_in_open": 600.0, "max_wait_in_open": 600.0}))
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                fleet.client.submit_echo("load", route="model")
                time.sleep(0.005)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()

        lags: list[float] = []
        open_epochs: set[int] = set()
        for _ in range(rounds):
            event = breaker.trip(reason="benchmark")
            open_epochs.add(event.epoch)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                mine = [r for r in fleet.control_log() if r["action"] == "pause" and r.get("epoch") == str(event.epoch)]
                if len({r["worker"] for r in mine}) == workers:
                    lags += [float(r["at"]) * 1000 - event.at_ms for r in mine]
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError(f"not every worker paused for epoch {event.epoch}")
            breaker.reset(reason="benchmark")
            time.sleep(0.1)

        # The baseline: Celery's broadcast, with replies, from the same machine.
        broadcast: list[float] = []
        app = fleet.client.app
        breaker.force_open(reason="benchmark: hold the fleet still while Celery cancels")
        time.sleep(0.3)
        for _ in range(rounds):
            app.control.add_consumer("echo", destination=nodes, reply=True, timeout=2)
            started = time.perf_counter()
            replies = app.control.cancel_consumer("echo", destination=nodes, reply=True, timeout=2, limit=workers)
            broadcast.append((time.perf_counter() - started) * 1000)
            if len(replies) != workers:
                raise RuntimeError(f"only {len(replies)} of {workers} workers replied")
        stop.set()
        producer.join(5)
        breaker.reset(reason="benchmark over")

        calls = [{k.decode(): v.decode() for k, v in f.items()}
                 for _, f in fleet.db.xrange(f"{fleet.prefix}:model-calls:echo")]
        after_trip = sum(1 for c in calls if int(c["epoch"]) in open_epochs)
        result: dict[str, Any] = {
            "workers": workers,
            "rounds": rounds,
            "fusebox_pause_p50_ms": round(percentile(lags, 50), 2),
            "fusebox_pause_p99_ms": round(percentile(lags, 99), 2),
            "fusebox_pause_max_ms": round(max(lags), 2),
            "celery_broadcast_p50_ms": round(percentile(broadcast, 50), 2),
            "celery_broadcast_p99_ms": round(percentile(broadcast, 99), 2),
            "model_calls_total": len(calls),
            "model_calls_after_trip": after_trip,
        }
        result["fusebox_vs_broadcast_p50"] = round(result["fusebox_pause_p50_ms"] / result["celery_broadcast_p50_ms"], 3)
        result["target_p99_met"] = result["fusebox_pause_p99_ms"] <= 20.0
        assert breaker.snapshot().state == State.CLOSED
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    result = run(args.workers, args.rounds)
    print(json.dumps(result) if args.json else "\n".join(f"{k:<28} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
