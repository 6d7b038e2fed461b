"""How long a trip takes to reach a second process while the store fails over.

    python -m benchmarks.failover_trip [--json] [--rounds R]

Each round starts a Sentinel deployment of its own (a master, a replica, three sentinels,
``down-after-milliseconds`` 1000; ``tests/support/sentinel.py``) and two processes on the
``sentinel://`` URL calling breaker ``m``: B every 20 ms, succeeding; A every millisecond
from a given instant, failing (the model fails for A's calls only), so B can only learn of
the trip through the shared store. Two phases, in the same run:

- ``healthy`` (the baseline): the model starts failing for A on a healthy store; the
  figure is the time from then to B's first rejection (A's failures trip the shared
  breaker, B hears the transition).
- ``failover``: the model starts failing for A at the instant the master is killed (-9);
  figures from the kill: when A rejects (its local breaker tripped), when the sentinels
  have promoted the replica, when the shared state on the new master is OPEN, when B first
  rejects; and how many failing calls A made in all (the model's exposure).

A process hands back what its local breaker learned when it rejoins the shared store
(``lua/merge.lua``), so A's failures during the failover trip the shared breaker on the
new master at A's rejoin, and B hears it: ``kill_to_b_rejects_ms`` is about
``kill_to_promoted_ms`` plus A's rejoin wait, and A's exposure stays near
``minimum_calls``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._stats import percentile
from breaker import BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, State

POLICY = BreakerPolicy(minimum_calls=20, failure_rate_threshold=0.5, window=10, wait_in_open=60,
                       max_wait_in_open=60, call_timeout=1)


def _breakers(url: str, prefix: str) -> Breakers:
    return Breakers.from_url(url, settings=BreakerSettings(redis_url=url, key_prefix=prefix), default_policy=POLICY)


def caller(url: str, prefix: str, role: str, workdir: str) -> None:
    """Calls ``m`` until ``<workdir>/stop`` exists; the model fails for role ``a`` while
    ``<workdir>/fail`` exists. Writes ``<workdir>/<role>.json``: the wall-clock times of
    each change of result (ok, failed, rejected) and the count of each result."""
    b = _breakers(url, prefix)
    b.get("m")
    b.wait_until_subscribed(10)
    changes: list[tuple[float, str]] = []
    counts: dict[str, int] = {}
    last = ""
    fail, stop = os.path.join(workdir, "fail"), os.path.join(workdir, "stop")
    (Path(workdir) / f"{role}.ready").touch()
    while not os.path.exists(stop):
        if role == "a" and not os.path.exists(fail):
            time.sleep(0.001)  # A calls only once its model fails: B's successes alone fill the window
            continue
        try:
            with b.guard("m"):
                if role == "a" and os.path.exists(fail):
                    raise RuntimeError("model down")
            result = "ok"
        except CallNotPermitted:
            result = "rejected"
        except RuntimeError:
            result = "failed"
        counts[result] = counts.get(result, 0) + 1
        if result != last:
            changes.append((time.time(), result))
            last = result
        time.sleep(0.001 if role == "a" else 0.02)
    b.close()
    with open(os.path.join(workdir, f"{role}.json"), "w", encoding="utf-8") as f:
        json.dump({"changes": changes, "counts": counts}, f)


def _first(changes: list[tuple[float, str]], result: str, after: float) -> float | None:
    return next((t for t, r in changes if r == result and t >= after), None)


def _ms(t: float | None, since: float) -> float | None:
    return None if t is None else round((t - since) * 1000, 1)


def one_round() -> dict[str, Any]:
    import multiprocessing

    from tests.support.sentinel import SentinelCluster

    spawn = multiprocessing.get_context("spawn")
    out: dict[str, Any] = {}
    with SentinelCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        url = cluster.url
        operator = _breakers(url, "bench-failover")
        fail, stop = Path(tmp) / "fail", Path(tmp) / "stop"

        def run_phase(failover: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, float | None]]:
            for p in (fail, stop, Path(tmp) / "a.ready", Path(tmp) / "b.ready"):
                p.unlink(missing_ok=True)
            procs = [spawn.Process(target=caller, args=(url, "bench-failover", role, tmp)) for role in ("a", "b")]
            for p in procs:
                p.start()
            while not all((Path(tmp) / f"{r}.ready").exists() for r in ("a", "b")):
                time.sleep(0.01)
            time.sleep(0.3)
            marks: dict[str, float | None] = {}
            start = time.time()
            old = cluster.kill_master() if failover else None
            fail.touch()
            marks["start"] = start
            if old is not None:
                cluster.wait_failover(old.port)
                marks["promoted"] = time.time()
            deadline = time.monotonic() + 60
            marks["shared_open"] = None
            while time.monotonic() < deadline:
                try:
                    if operator.get("m").snapshot().state == State.OPEN and not operator.degraded:
                        marks["shared_open"] = time.time()
                        break
                except Exception:  # noqa: BLE001 - the store is failing over: ask again
                    pass
                time.sleep(0.005)
            time.sleep(1.0)  # let B hear it
            stop.touch()
            for p in procs:
                p.join(30)
            a = json.loads((Path(tmp) / "a.json").read_text())
            b = json.loads((Path(tmp) / "b.json").read_text())
            return a, b, marks

        a, b, m = run_phase(failover=False)
        start = m["start"] or 0.0
        out["healthy"] = {
            "fail_to_shared_open_ms": _ms(m["shared_open"], start),
            "fail_to_b_rejects_ms": _ms(_first([tuple(c) for c in b["changes"]], "rejected", start), start),
            "a_failed_calls": a["counts"].get("failed", 0),
        }
        operator.get("m").reset(reason="next phase")
        a, b, m = run_phase(failover=True)
        start = m["start"] or 0.0
        out["failover"] = {
            "kill_to_a_rejects_ms": _ms(_first([tuple(c) for c in a["changes"]], "rejected", start), start),
            "kill_to_promoted_ms": _ms(m.get("promoted"), start),
            "kill_to_shared_open_ms": _ms(m["shared_open"], start),
            "kill_to_b_rejects_ms": _ms(_first([tuple(c) for c in b["changes"]], "rejected", start), start),
            "a_failed_calls": a["counts"].get("failed", 0),
        }
        operator.close()
    return out


def run(rounds: int) -> dict[str, Any]:
    results = [one_round() for _ in range(rounds)]

    def summary(phase: str, key: str) -> dict[str, float | None]:
        values = [r[phase][key] for r in results if r[phase][key] is not None]
        return {"p50": percentile(values, 50) if values else None, "max": max(values) if values else None,
                "missing": rounds - len(values)}

    figures = {phase: {key: summary(phase, key) for key in results[0][phase]} for phase in ("healthy", "failover")}
    healthy = figures["healthy"]["fail_to_b_rejects_ms"]["p50"]
    failover = figures["failover"]["kill_to_b_rejects_ms"]["p50"]
    return {
        "rounds": rounds,
        "policy": {"minimum_calls": POLICY.minimum_calls, "failure_rate_threshold": POLICY.failure_rate_threshold},
        "sentinel_down_after_ms": 1000,
        **figures,
        "b_reached_ratio_failover_over_healthy": round(failover / healthy, 1) if healthy and failover else None,
        "per_round": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.rounds)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
