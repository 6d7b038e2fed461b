"""One or two sick devices among four: the model's share of the answers, before and after
device ejection (issue 21).

    python -m benchmarks.sick_device [--json] [--rate 20] [--jobs 300]

Four echo workers (``-c 1``: four devices) and a fallback worker on a private Redis; on
one, then two, of the four, every model call raises Paddle's ``(External) CUDA error(700),
an illegal memory access was encountered.`` (the worker-targeted ``device_fault`` switch).
Jobs are submitted at ``--rate`` per second (``--jobs`` with one sick device, a third more
with two), in two phases in the same run:

- ``before``: ``FUSEBOX_DEVICE_EJECTION=0``, the plain fleet breaker (every failure counts
  for the model);
- ``after``: device ejection on, with its defaults.

Per phase and sick count: jobs answered by the model (share), degraded, whether the
model's breaker tripped, the sick devices' calls before their ejection (latency in calls)
and the time from the fault switched on to the ejection (ms), and the jobs that ran again
on another device.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchmarks._fleet import BenchFleet
from breaker import State
from workers.devices.gate import SEEN_INTERVAL
from workers.devices.rules import EjectionRules
from workers.devices.store import DeviceStore
from workers.faults import SWITCH_TTL, Faults, FaultSpec

RERUN_LINE = "back to the queue for another device"


def _scenario(fleet: BenchFleet, model_workers: list[Any], sick: int, jobs: int, rate: float) -> dict[str, Any]:
    faults, store = Faults(fleet.db, fleet.prefix), DeviceStore(fleet.db, fleet.prefix, EjectionRules())
    breaker = fleet.client.breakers.get("echo")
    breaker.reset(reason="benchmark")
    for key in fleet.db.scan_iter(f"{fleet.prefix}:device*"):
        fleet.db.delete(key)
    time.sleep(SEEN_INTERVAL + 0.3)  # every worker marks its devices live again, as in a running fleet
    reruns_before = sum(w.log().count(RERUN_LINE) for w in model_workers)
    trips_before = breaker.snapshot().totals.get("to_open", 0)
    switched_on = time.time()
    for worker in model_workers[:sick]:
        faults.set("echo", FaultSpec(device_fault=True), worker=worker.nodename)
    time.sleep(SWITCH_TTL + 0.05)
    handles, start = [], time.monotonic()
    for i in range(jobs):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        handles.append(fleet.client.submit_echo(f"sick {sick} job {i}"))
    results = [h.get(timeout=300) for h in handles]
    for worker in model_workers[:sick]:
        faults.clear("echo", worker.nodename)
    snapshot = breaker.snapshot()
    records = {r.device: r for r in store.records("echo")}
    sick_records = [r for r in records.values() if any(r.device.startswith(w.nodename) for w in model_workers[:sick])]
    ejected = [r for r in sick_records if r.ejections]
    by_model = sum(r.served_by == "model" for r in results)
    return {
        "jobs": jobs,
        "by_model": by_model,
        "model_share": round(by_model / jobs, 4),
        "degraded": sum(r.degraded for r in results),
        "breaker_tripped": snapshot.totals.get("to_open", 0) > trips_before,
        "breaker_state_at_end": snapshot.state.value,
        "sick_devices_ejected": len(ejected),
        "ejection_latency_calls": max((r.calls - max(0, r.ejections - 1) for r in ejected), default=None),
        "ejection_latency_ms": (round(max((r.since or switched_on) - switched_on for r in ejected) * 1000, 1)
                                if ejected else None),
        "sick_device_calls": sum(r.calls for r in sick_records),
        "jobs_rerun_elsewhere": sum(w.log().count(RERUN_LINE) for w in model_workers) - reruns_before,
    }


def _phase(ejection: bool, jobs: int, rate: float) -> dict[str, Any]:
    with BenchFleet(FUSEBOX_DEVICE_EJECTION="1" if ejection else "0", FUSEBOX_PRELOAD="none") as fleet:
        model_workers = [fleet.start(["echo"], f"gpu{i}") for i in range(4)]
        fleet.start(["fallback"], "cpu")
        return {f"sick_{n}_of_4": _scenario(fleet, model_workers, n, jobs if n == 1 else jobs * 4 // 3, rate)
                for n in (1, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sick_device", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs submitted per second")
    parser.add_argument("--jobs", type=int, default=300, help="jobs with one sick device (a third more with two)")
    args = parser.parse_args(argv)
    before = _phase(False, args.jobs, args.rate)
    after = _phase(True, args.jobs, args.rate)
    report = {"benchmark": "sick_device", "workers": 4, "rate": args.rate, "before": before, "after": after,
              "model_share_ratio": {k: round(after[k]["model_share"] / max(before[k]["model_share"], 1e-9), 2)
                                    for k in after}}
    if args.json:
        print(json.dumps(report))
    else:
        for phase in ("before", "after"):
            for case, figures in report[phase].items():
                print(f"{phase:6} {case}: {figures['by_model']}/{figures['jobs']} by the model, "
                      f"{figures['degraded']} degraded, breaker tripped: {figures['breaker_tripped']}, "
                      f"ejected after {figures['ejection_latency_calls']} call(s) / {figures['ejection_latency_ms']} ms, "
                      f"{figures['jobs_rerun_elsewhere']} re-run elsewhere")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
