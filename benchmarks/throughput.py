"""Job throughput through Celery and the breaker, against plain baselines in the same run.

    python -m benchmarks.throughput [--json] [--pages N] [--noop-jobs N] [--skip-ocr] [--skip-noop]

- OCR (benchmarks/ocr_throughput.py): pages/s like for like, the same P processes x T
  threads as plain PaddleOCR loops and as jobs through fusebox, for every P x T that fills
  the cores, with RapidOCR as a peer and the oneDNN-off loop as "before". Target: fusebox /
  plain >= 0.95 at the best layout.
- No-op: echo jobs/s through the guarded task against the same work in a task without the
  breaker (benchmarks/celery_app.py), on the same worker, rounds in ABBA order. Each round
  fills the queue first and times the worker draining it (stored completion times), so the
  producer's own pace does not count. Target: ratio >= 0.95.

A private Redis is started for the run; the producer is this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from benchmarks import ocr_throughput
from benchmarks._fleet import BenchFleet


def _consumption_rate(results: list[Any]) -> float:
    """Jobs per second from the first job done to the last, by the workers' own clocks
    (``date_done``): the producer's pace is out of the figure."""
    done = sorted(r.date_done.timestamp() for r in results)
    return (len(done) - 1) / (done[-1] - done[0])


def noop_rates(jobs: int, rounds: int, cores: int) -> tuple[list[float], list[float]]:
    """Each round fills a queue while nobody consumes it, then lets the worker drain it:
    the echo queue paused by its breaker (FORCED_OPEN, then reset), the baseline's queue
    paused with Celery's cancel_consumer / add_consumer."""
    from workers.jobs import Job

    guarded, plain = [], []
    with BenchFleet(FUSEBOX_PRELOAD="none") as fleet:
        node = fleet.start(["echo", "bench"], "noop", concurrency=cores, app_module="benchmarks.celery_app").nodename
        app, breaker = fleet.client.app, fleet.client.breakers.get("echo")

        def fill(task: str, queue: str) -> list[Any]:
            bodies = [Job(model="echo", text=f"noop {i}").model_dump(mode="json") for i in range(jobs)]
            return [app.send_task(task, args=[b], queue=queue) for b in bodies]

        def drain(handles: list[Any]) -> float:
            for h in handles:
                h.get(timeout=300)
            return _consumption_rate([app.AsyncResult(h.id) for h in handles])

        def guarded_round() -> float:
            breaker.force_open(reason="benchmark: fill the queue")
            time.sleep(0.5)
            handles = fill("fusebox.echo", "echo")
            breaker.reset(reason="benchmark: drain")
            return drain(handles)

        def plain_round() -> float:
            app.control.cancel_consumer("bench", destination=[node], reply=True, timeout=2)
            handles = fill("bench.echo_unguarded", "bench")
            app.control.add_consumer("bench", destination=[node], reply=True, timeout=2)
            return drain(handles)

        guarded_round(), plain_round()  # warm-up
        for i in range(rounds):
            # ABBA: neither contender always goes first.
            if i % 2 == 0:
                guarded.append(guarded_round())
                plain.append(plain_round())
            else:
                plain.append(plain_round())
                guarded.append(guarded_round())
        fleet.client.breakers.flush()
        snap = breaker.snapshot()
        assert snap.totals.get("success", 0) >= jobs * rounds, snap.totals
    return guarded, plain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pages", type=int, default=12, help="OCR pages (tests/support/ocr_pages.py)")
    parser.add_argument("--noop-jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="pairs of no-op rounds, in ABBA order")
    parser.add_argument("--skip-ocr", action="store_true", help="only the no-op comparison")
    parser.add_argument("--skip-noop", action="store_true", help="only the OCR comparison")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"cores": cores}

    if not args.skip_noop:
        guarded, plain = noop_rates(args.noop_jobs, args.rounds, cores)
        result["noop_guarded_jobs_per_s"] = round(statistics.median(guarded), 1)
        result["noop_unguarded_jobs_per_s"] = round(statistics.median(plain), 1)
        result["noop_ratio"] = round(result["noop_guarded_jobs_per_s"] / result["noop_unguarded_jobs_per_s"], 3)
        result["noop_ratio_per_pair"] = [round(g / p, 3) for g, p in zip(guarded, plain)]
        result["target_noop_met"] = result["noop_ratio"] >= 0.95

    if not args.skip_ocr:
        result.update(ocr_throughput.run(args.pages, ocr_throughput.layouts_for(cores), before=True, rapid=True))
    print(json.dumps(result) if args.json else "\n".join(f"{k:<30} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
