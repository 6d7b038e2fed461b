"""A randomized fault harness for the shared breaker, Jepsen's way: a nemesis and a checker.

    python -m benchmarks.nemesis --seed N --minutes M [--callers C] [--json]

Several real caller processes (``benchmarks/_nemesis_caller.py``; some fork a child
mid-run, as Celery's prefork pool does) make guarded calls to a model whose failure rate
changes on a schedule (healthy, flaky, failing, hanging), through a TCP proxy to a private
``redis-server``. Meanwhile the nemesis hurts that server and acts as an operator, at
random times drawn from the seed:

- ``kill_restart``: kill -9, restarted from the last snapshot (``SAVE``, taken now and
  then), so the store comes back *behind*; ``restart_empty``: kill -9, started empty;
- ``freeze``: SIGSTOP for a while (unreachable); ``pause``: ``CLIENT PAUSE``;
- ``oom``: ``maxmemory`` lowered under ``noeviction`` (every write refused);
- ``script_flush``: ``SCRIPT FLUSH`` (NOSCRIPT); ``silence``: the proxy stops forwarding
  the subscriptions without closing them;
- operator: ``force_open`` and ``disable`` (held, then ``reset``), ``trip``, ``reset``,
  ``set_policy``.

Every call, every fault and a sample of the store's state every 0.1 s are logged; the
checker (``benchmarks/_nemesis_check.py``) then verifies the invariants of docs/breaker.md
("Invariants") and prints the violations with the seed that replays the run. The JSON line
holds the figures; the exit status is 1 when an invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks._nemesis_check import check
from breaker import BreakerPolicy
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.state import Control
from tests.support.proxy import SilentProxy
from tests.support.redis_server import RedisServer

NAME = "model"
PREFIX = "nemesis"
POLICY = BreakerPolicy(minimum_calls=5, failure_rate_threshold=0.5, slow_call_duration=0.8, window=10,
                       wait_in_open=1.0, wait_in_open_multiplier=1.5, max_wait_in_open=4.0,
                       permitted_calls_in_half_open=2, max_wait_in_half_open=2.0, call_timeout=1.0,
                       slow_start=0.0)
LOSSY = ("kill_restart", "restart_empty")
FAULTS = ("kill_restart", "restart_empty", "freeze", "pause", "oom", "script_flush", "silence",
          "force_open", "disable", "trip", "reset", "set_policy")
LOSSLESS = tuple(f for f in FAULTS if f not in LOSSY + ("disable",))


def schedule(rng: random.Random, seconds: float) -> list[list[float]]:
    """Phases of the model: [start, end, failure rate, hang seconds] from the run's start."""
    phases, t = [], 0.0
    while t < seconds:
        kind = rng.choices(["healthy", "flaky", "failing", "hanging"], [4, 2, 3, 1])[0]
        # A failing phase outlasts the reaction time (checked in its second half).
        length = rng.uniform(10.0, 16.0) if kind == "failing" else rng.uniform(4.0, 10.0)
        rate, hang = {"healthy": (0.0, 0.0), "flaky": (0.2, 0.0), "failing": (1.0, 0.0),
                      "hanging": (0.0, 2.5)}[kind]
        phases.append([t, min(t + length, seconds), rate, hang])
        t += length
    return phases


class Nemesis:
    """Applies faults to the server and operator actions to the breaker, logging each."""

    def __init__(self, server: RedisServer, proxy: SilentProxy, rng: random.Random) -> None:
        self.server, self.proxy, self.rng = server, proxy, rng
        self.faults: list[dict[str, Any]] = []
        self.totals: list[dict[str, Any]] = []  # operator's totals readings (DISABLED check)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.server.port, socket_timeout=2)

    def backend(self) -> RedisBackend:
        return RedisBackend(self.client(), Keyspace(PREFIX))

    def apply(self, fault: str) -> None:
        rng, server = self.rng, self.server
        entry: dict[str, Any] = {"fault": fault, "t0": time.time()}
        try:
            if fault in LOSSY:
                server.kill()
                if fault == "restart_empty":
                    Path(server._dir, "dump.rdb").unlink(missing_ok=True)
                time.sleep(rng.uniform(0.2, 1.5))
                server.start()
            elif fault == "freeze":
                server.freeze()
                time.sleep(rng.uniform(0.2, 1.5))
                server.resume()
            elif fault == "pause":
                self.client().execute_command("CLIENT", "PAUSE", int(rng.uniform(200, 1500)), "ALL")
            elif fault == "oom":
                c = self.client()
                c.config_set("maxmemory", "1")
                time.sleep(rng.uniform(0.3, 1.5))
                c.config_set("maxmemory", "0")
            elif fault == "script_flush":
                self.client().script_flush()
            elif fault == "silence":
                entry["silenced"] = self.proxy.silence_subscriptions()
            elif fault in ("force_open", "disable"):
                action = Control.FORCE_OPEN if fault == "force_open" else Control.DISABLE
                event = self.backend().control(NAME, POLICY, action, "nemesis", "nemesis")
                entry["epoch"] = event.epoch
                hold = rng.uniform(2.0, 5.0)
                time.sleep(min(hold, 3.0))
                entry["totals_mid"] = self.read_totals()
                time.sleep(max(0.0, hold - 3.0))
                entry["totals_end"] = self.read_totals()
                entry["t_reset"] = time.time()
                self.backend().control(NAME, POLICY, Control.RESET, "nemesis", "nemesis")
            elif fault in ("trip", "reset"):
                action = Control.TRIP if fault == "trip" else Control.RESET
                self.backend().control(NAME, POLICY, action, "nemesis", "nemesis")
            elif fault == "set_policy":
                policy = POLICY.model_copy(update={
                    "failure_rate_threshold": rng.choice([0.3, 0.5, 0.7]),
                    "permitted_calls_in_half_open": rng.choice([1, 2, 3])})
                entry["permitted"] = policy.permitted_calls_in_half_open
                self.backend().set_policy(NAME, policy, "nemesis")
        except (redis.RedisError, OSError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["t1"] = time.time()
        self.faults.append(entry)

    def read_totals(self) -> dict[str, int] | None:
        try:
            return dict(self.backend().snapshot(NAME, POLICY).totals)
        except (redis.RedisError, OSError):
            return None


def sample_store(port: int, stop: threading.Event, samples: list[list[Any]]) -> None:
    """The store's view of the breaker every 0.1 s: [time, state, epoch, incarnation]."""
    client = redis.Redis(port=port, socket_timeout=0.2)
    key = Keyspace(PREFIX).breaker(NAME)[0]
    while not stop.is_set():
        try:
            state, epoch, inc = client.hmget(key, "state", "epoch", "incarnation")
            if state is not None:
                samples.append([time.time(), state.decode(), int(epoch), int(inc)])
        except (redis.RedisError, OSError):
            pass
        stop.wait(0.1)


def run(seed: int, seconds: float, callers: int, out: str, faults: tuple[str, ...] = FAULTS) -> dict[str, Any]:
    """One run; ``faults`` limits the nemesis (without the lossy ones and ``disable``, the
    checker also demands exact counts: every outcome made is counted or knowingly lost)."""
    rng = random.Random(seed)
    phases = schedule(rng, seconds)
    started = time.time()
    with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as server, \
            SilentProxy(("127.0.0.1", server.port)) as proxy:
        redis.Redis(port=server.port).save()
        t0 = time.time() + 2.0  # callers start together, once subscribed
        procs = []
        for i in range(callers):
            cfg = {"url": proxy.url, "prefix": PREFIX, "policy": POLICY.model_dump(mode="json"), "out": out,
                   "caller": i, "seed": rng.random(), "schedule": phases, "t0": t0, "seconds": seconds,
                   "pause": 0.004, "refresh_interval": 0.5, "child_seconds": rng.uniform(3, 10),
                   "settle_seconds": 45.0,  # > the longest rejoin wait after flaps (30 s, +20 % jitter)
                   "fork_at": rng.uniform(0.2, 0.8) * seconds if i % 2 == 0 else None}
            procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks._nemesis_caller", json.dumps(cfg)]))
        nemesis = Nemesis(server, proxy, random.Random(rng.random()))
        samples: list[list[Any]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_store, args=(server.port, stop, samples), daemon=True)
        sampler.start()
        time.sleep(max(0.0, t0 - time.time()) + 1.0)
        while time.time() < t0 + seconds - 2.0:
            if nemesis.rng.random() < 0.3:
                try:
                    nemesis.client().save()  # the older snapshot a later kill_restart comes back from
                except (redis.RedisError, OSError):
                    pass
            nemesis.apply(nemesis.rng.choice(faults))
            time.sleep(nemesis.rng.uniform(0.5, 3.0))
        for p in procs:
            p.wait(timeout=seconds + 120)
        stop.set()
        sampler.join(2)
        snap = nemesis.backend().snapshot(NAME, POLICY)
        store = {"totals": dict(snap.totals), "applied_ids": nemesis.client().zcard(Keyspace(PREFIX).breaker(NAME)[6])}
        with open(os.path.join(out, "nemesis.json"), "w") as f:
            json.dump({"t0": t0, "phases": phases, "faults": nemesis.faults, "samples": samples, "store": store}, f)
    result = check(out, phases, nemesis.faults, samples, store, POLICY, t0)
    result.update(seed=seed, seconds=round(time.time() - started, 1), callers=callers,
                  faults_applied=_count(f["fault"] for f in nemesis.faults))
    return result


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replays a run (default: a random one)")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--callers", type=int, default=3)
    parser.add_argument("--lossless", action="store_true",
                        help="no fault that loses data or disables: the counts must then be exact")
    parser.add_argument("--runs", type=int, default=1, help="runs of --minutes each, seeds seed, seed+1...")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    parser.add_argument("--keep", default=None, help="a folder to keep each run's logs in (for a failing seed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    faults = LOSSLESS if args.lossless else FAULTS
    failed = False
    for i in range(args.runs):
        if args.keep:
            out = os.path.join(args.keep, f"seed-{seed + i}")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            result = run(seed + i, args.minutes * 60, args.callers, out, faults)
        else:
            with tempfile.TemporaryDirectory(prefix="fusebox-nemesis-") as out:
                result = run(seed + i, args.minutes * 60, args.callers, out, faults)
        failed = failed or bool(result["violations"])
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(json.dumps(result, indent=2), flush=True)
        if result["violations"]:
            print(f"nemesis: invariant violated; replay with --seed {seed + i} --minutes {args.minutes} "
                  f"--callers {args.callers}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
