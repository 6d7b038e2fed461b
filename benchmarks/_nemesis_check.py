"""The checker of the nemesis run (benchmarks/nemesis.py): the invariants of docs/breaker.md
("Invariants") verified on what every process logged, what the nemesis did, and samples of
the store's own state.

Each check returns its violations (a short text each). ``BOUND`` is the documented bound on
how old a state a process may decide on (a view is trusted while its subscription showed a
sign of life in the last 2 s and its last full re-read is younger than 1.5 × the re-read
interval, here 0.5 s); ``reaction(policy)`` the time a model failing above threshold may take to
be rejected in every process: with a time-based window, a model that turns from healthy to
failing at a steady call rate reaches the failure-rate threshold after ``threshold ×
window`` seconds, plus a second for the trip to reach every process.
"""

from __future__ import annotations

import bisect
import glob
import json
import os
from collections import defaultdict
from typing import Any

from breaker import BreakerPolicy

BOUND = 3.0
LOSSY = ("kill_restart", "restart_empty")
OUTCOMES = ("success", "failure", "timeout", "slow", "ignored")


def load(out: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Calls per process log, and each process's health at its end."""
    calls: dict[str, list[dict[str, Any]]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(out, "calls-*.jsonl"))):
        tag = os.path.basename(path)[6:-6]
        rows = [json.loads(line) for line in open(path) if line.strip()]
        calls[tag] = [r for r in rows if r["k"] != "end"]
        for r in rows:
            if r["k"] == "end":
                ends[tag] = r["health"]
    return calls, ends


def _overlaps(faults: list[dict[str, Any]], kinds: tuple[str, ...], start: float, end: float) -> bool:
    return any(f["fault"] in kinds and f["t0"] <= end and f["t1"] >= start for f in faults)


def counted_once(calls: dict[str, list[dict[str, Any]]], ends: dict[str, dict[str, Any]],
                 faults: list[dict[str, Any]], store: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    made = sum(1 for rows in calls.values() for r in rows if r["k"] != "rej")
    counted = sum(int(store["totals"].get(k, 0)) for k in OUTCOMES)
    lost = sum(h.get("lost_outcomes", 0) + h.get("dropped_outcomes", 0) for h in ends.values())
    unsettled = sum(h.get("tallied_outcomes", 0) + h.get("pending_outcomes", 0) for h in ends.values()
                    if not h.get("degraded"))
    # A process still cut off at the end keeps its tally to hand back later, by design.
    held = sum(h.get("tallied_outcomes", 0) for h in ends.values() if h.get("degraded"))
    figures = {"outcomes_made": made, "outcomes_counted": counted, "knowingly_lost": lost, "unsettled": unsettled,
               "held_by_degraded_processes": held, "degraded_at_end": sum(1 for h in ends.values() if h.get("degraded"))}
    violations = []
    if counted > made:
        violations.append(f"counted twice: the store counted {counted} outcomes, the processes made {made}")
    exact = not any(f["fault"] in LOSSY + ("disable",) for f in faults) and not held
    figures["exact_run"] = exact
    if exact and counted != made - lost - unsettled:
        violations.append(f"not exactly once: made {made}, knowingly lost {lost}, unsettled {unsettled}, "
                          f"counted {counted}")
    if unsettled:
        violations.append(f"{unsettled} outcomes still tallied or queued after the run settled (store shared)")
    return violations, figures


def operator_holds(calls: dict[str, list[dict[str, Any]]], faults: list[dict[str, Any]]) -> list[str]:
    """FORCED_OPEN rejects and DISABLED admits every call, in every process (children too),
    from ``BOUND`` after the action until the reset; DISABLED records nothing."""
    violations = []
    for f in faults:
        if f["fault"] not in ("force_open", "disable") or "error" in f or "t_reset" not in f:
            continue
        start, end = f["t0"] + BOUND, f["t_reset"]
        if end <= start or _overlaps(faults, LOSSY, f["t0"], end):
            continue  # the store may have lost the operator's action: it must be repeated
        for tag, rows in calls.items():
            # A process deciding locally (degraded) cannot hear the action: it learns it at
            # rejoin, after its backoff (an action taken before it lost the store holds:
            # its local breaker is seeded with it, which the shared decisions show).
            if f["fault"] == "force_open":
                bad = [r for r in rows if r["k"] != "rej" and not r.get("l") and start <= r["t"] <= end]
                what = "admitted under FORCED_OPEN"
            else:
                bad = [r for r in rows if r["k"] == "rej" and not r.get("l") and start <= r["t"] <= end]
                what = "rejected under DISABLED"
            if bad:
                violations.append(f"{tag}: {len(bad)} call(s) {what} (first {bad[0]['t'] - f['t0']:.2f}s after it)")
        if f["fault"] == "disable" and f.get("totals_mid") and f.get("totals_end"):
            mid = {k: f["totals_mid"].get(k, 0) for k in OUTCOMES}
            end_totals = {k: f["totals_end"].get(k, 0) for k in OUTCOMES}
            if mid != end_totals:
                violations.append(f"DISABLED recorded outcomes: {mid} -> {end_totals}")
    return violations


def probes_in_flight(calls: dict[str, list[dict[str, Any]]], faults: list[dict[str, Any]],
                     policy: BreakerPolicy) -> tuple[list[str], int]:
    """HALF_OPEN never has more than N probes in flight (per epoch of one store's life: a
    store that came back behind may hand out an epoch's permits again)."""
    permitted = max([policy.permitted_calls_in_half_open] + [f.get("permitted", 0) for f in faults])
    losses = sorted(f["t1"] for f in faults if f["fault"] in LOSSY)
    sweeps: dict[tuple[int, int, int], list[tuple[float, int]]] = defaultdict(list)
    for rows in calls.values():
        for r in rows:
            if r["k"] != "rej" and r.get("p") is not None and not r.get("l"):
                life = bisect.bisect(losses, r["t"])
                sweeps[(life, r["inc"], r["ep"])] += [(r["t"], 1), (r["e"], -1)]
    worst, violations = 0, []
    for key, events in sweeps.items():
        level = peak = 0
        for _, step in sorted(events, key=lambda x: (x[0], x[1])):
            level += step
            peak = max(peak, level)
        worst = max(worst, peak)
        if peak > permitted:
            violations.append(f"{peak} probes in flight in HALF_OPEN epoch {key[2]} (N = {permitted})")
    return violations, worst


def decided_on_fresh_state(calls: dict[str, list[dict[str, Any]]], samples: list[list[Any]],
                           faults: list[dict[str, Any]]) -> tuple[list[str], int]:
    """A shared admission carries a state the store held at most ``BOUND`` ago: no process
    keeps deciding on an epoch the store moved past more than ``BOUND`` before, nor on an
    (incarnation, epoch) the store lost (came back behind, or empty). Only readings of the
    store's current life count (since the last kill or empty restart)."""
    times = [s[0] for s in samples]
    lives = sorted(f["t1"] for f in faults if f["fault"] in LOSSY)
    violations, checked = [], 0
    for tag, rows in calls.items():
        bad = []
        for r in rows:
            if r["k"] == "rej" or r.get("l"):
                continue
            born = max((t for t in lives if t <= r["t"]), default=0.0)
            lo = bisect.bisect_left(times, max(born, r["t"] - BOUND - 1.0))
            hi = bisect.bisect_right(times, r["t"] + 0.3)
            seen = [s for s in samples[lo:hi]]
            if not seen:
                continue  # the store answered nobody then (paused, frozen, down)
            checked += 1
            mine = [s for s in seen if s[3] == r["inc"]]
            later = [s for s in seen if s[0] > r["t"] + 0.15]
            if not mine:
                if later and min(s[0] for s in seen) <= r["t"] - BOUND:
                    bad.append(r)  # the store held another incarnation throughout
            elif any(s[2] > r["ep"] for s in mine if s[0] <= r["t"] - BOUND):
                bad.append(r)  # the store was past this epoch more than BOUND before
            elif r["ep"] > max(s[2] for s in mine) and any(s[3] == r["inc"] for s in later):
                bad.append(r)  # an epoch the store never showed in this life (it came back behind)
        if bad:
            violations.append(f"{tag}: {len(bad)} admission(s) on a state the store did not hold within "
                              f"{BOUND}s (first at incarnation {bad[0]['inc']} epoch {bad[0]['ep']})")
    return violations, checked


def _seeded_by_operator(rows: list[dict[str, Any]], faults: list[dict[str, Any]]) -> set[int]:
    """Indexes of the local decisions of a process that lost the store while an operator
    had the breaker DISABLED: its local breaker keeps admitting everything until it
    rejoins (invariant 4), whatever the model does."""
    held = [(f["t0"], f.get("t_reset", f["t1"]) + BOUND) for f in faults if f["fault"] == "disable"]
    seeded, inside, started, epoch = set(), False, 0.0, None
    for i, r in enumerate(rows):
        if not r.get("l"):
            inside = False
            continue
        if r.get("ep") is not None and r["ep"] != epoch:
            # A new local epoch: a local transition, or a re-seed after a rejoin too short
            # to show in the log.
            inside, epoch = False, r["ep"]
        if not inside:
            inside, started = True, r["t"]
        if any(a <= started <= b for a, b in held):
            seeded.add(i)
    return seeded


def reaction(policy: BreakerPolicy) -> float:
    return policy.failure_rate_threshold * policy.window + 1.0


def rejected_when_failing(calls: dict[str, list[dict[str, Any]]], phases: list[list[float]],
                          faults: list[dict[str, Any]], policy: BreakerPolicy, t0: float
                          ) -> tuple[list[str], int, int]:
    """A model failing for longer than the reaction time is rejected in every process: in
    any stretch of that length after it, a process lets at most 2 × minimum_calls + 10
    non-probe calls reach it (a store that lost its state must see minimum_calls again, a
    process cut off from it must see them on its own)."""
    react = reaction(policy)
    limit = 2 * policy.minimum_calls + 10
    operator = ("disable", "reset", "force_open", "set_policy")  # the operator lets calls in
    violations, worst, checked = [], 0, 0
    for start, end, rate, _ in phases:
        if rate < 1.0 or end - start <= react + 1:
            continue
        checked += 1
        a, b = t0 + start + react, t0 + end
        for tag, rows in calls.items():
            operated = _seeded_by_operator(rows, faults)
            times = sorted(r["t"] for i, r in enumerate(rows) if r["k"] != "rej" and r.get("p") is None
                           and a <= r["t"] <= b and i not in operated)
            for i, t in enumerate(times):
                j = bisect.bisect_right(times, t + react)
                if _overlaps(faults, operator, t - BOUND, t + react):
                    continue
                worst = max(worst, j - i)
                if j - i > limit:
                    violations.append(f"{tag}: {j - i} calls reached a failing model within {react}s "
                                      f"({t - t0:.1f}s into the run; limit {limit})")
                    break
    return violations, worst, checked


def check(out: str, phases: list[list[float]], faults: list[dict[str, Any]], samples: list[list[Any]],
          store: dict[str, Any], policy: BreakerPolicy, t0: float) -> dict[str, Any]:
    """Every invariant on one run's logs; ``t0`` is the wall-clock start of the schedule."""
    calls, ends = load(out)
    counted, figures = counted_once(calls, ends, faults, store)
    probes, peak = probes_in_flight(calls, faults, policy)
    fresh, checked = decided_on_fresh_state(calls, samples, faults)
    reaction, worst, failing_phases = rejected_when_failing(calls, phases, faults, policy, t0)
    holds = operator_holds(calls, faults)
    violations = {name: v for name, v in (("counted_once", counted), ("operator_holds", holds),
                                          ("probes_in_flight", probes), ("fresh_state", fresh),
                                          ("rejected_when_failing", reaction)) if v}
    rows = [r for rs in calls.values() for r in rs]
    return {
        "violations": violations,
        "processes": len(calls),
        "forked_children": sum(1 for tag in calls if "c" in tag.split("-")[0]),
        "calls": len(rows),
        "rejected": sum(1 for r in rows if r["k"] == "rej"),
        "local_decisions": sum(1 for r in rows if r.get("l")),
        **figures,
        "peak_probes_in_flight": peak,
        "admissions_checked_fresh": checked,
        "failing_phases_checked": failing_phases,
        "worst_calls_to_failing_model_per_reaction": worst,
        "store_samples": len(samples),
        "applied_ids_in_store": store["applied_ids"],
        "store_losses_per_process": {tag: h.get("losses", 0) for tag, h in ends.items()},
    }


def recheck(out: str, policy: BreakerPolicy) -> dict[str, Any]:
    """Checks a kept run again (``nemesis --keep``): ``python -m benchmarks._nemesis_check DIR``."""
    with open(os.path.join(out, "nemesis.json")) as f:
        run = json.load(f)
    return check(out, run["phases"], run["faults"], run["samples"], run["store"], policy, run["t0"])


if __name__ == "__main__":
    import sys

    from benchmarks.nemesis import POLICY

    print(json.dumps(recheck(sys.argv[1], POLICY), indent=2))
