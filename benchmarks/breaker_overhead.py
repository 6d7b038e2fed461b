"""What a guarded call costs, against a Redis PING and against the peers a user would pick
instead: pybreaker with its Redis storage, and interlock-cb with its Redis storage.

    python -m benchmarks.breaker_overhead [--json] [--calls N] [--rounds R]

Everything is measured in one run on the same Redis (FUSEBOX_REDIS_URL when it answers,
else one started for the run), in interleaved rounds so that a noisy neighbour hurts every
contender alike. Reported, in microseconds per call:

- ping: one PING round trip (the unit of the targets);
- fusebox_closed: ``with breaker.guard():`` around nothing, breaker CLOSED: admission from
  the pushed state and the outcome queued for the write-behind thread;
- fusebox_open: the same guard on a breaker that is OPEN (forced open): the refusal decided
  from the pushed state, no round trip, and counted (queued for the write-behind thread,
  issue 27); ``rejections_lost`` must be 0;
- fusebox_model_call: the same guard as a model task calls it (workers/pipeline.py): the
  ticket admitted first, then ``breaker.guard(ticket, timeout=..., recorded=...)`` with the
  call's size-scaled allowance (workers/runners/sizing.py) around nothing;
- fusebox_record: one outcome written synchronously (``record(..., wait=True)``): the
  atomic script call that the write-behind thread makes, batched, for every call;
- pybreaker_redis: ``pybreaker.CircuitBreaker(state_storage=CircuitRedisStorage)`` around
  nothing (the Python anchor);
- interlock_redis: ``interlock.CircuitBreaker(storage=RedisStorage)`` around nothing, the
  closest peer (state shared through Redis Lua scripts, windows kept per process).

Also measured, each in the same run:

- self_trip: two processes call a model that always fails at about 1 kHz each; how many
  calls reach the model before both are turned away (target <= 1.5 x minimum_calls);
- record capacity: two processes make guarded calls as fast as they can for a few seconds
  against a Redis of the benchmark's own; outcomes written per second, and Redis CPU
  microseconds per outcome (``INFO cpu``);
- outcomes lost or dropped (must be 0).

Targets: fusebox_closed p50 <= ping p50 and <= half of pybreaker_redis p50 (issue 2);
fusebox_open p50 <= ping p50 with every refusal counted (issue 27);
fusebox_closed p50 <= interlock_redis p50 and p99 <= 2 x interlock_redis p99 (issue 15).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import uuid
from typing import Any

import redis

from api.services import RedisServer, ensure_redis
from benchmarks._stats import percentile, time_calls
from breaker import BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, Outcome, State
from workers.runners.sizing import allowance

SPAWN = multiprocessing.get_context("spawn")


def wait_for_state(breakers: Breakers, name: str, state: State, timeout: float = 10.0) -> bool:
    """Until this process knows ``name`` is in ``state`` from trusted pushed state."""
    deadline = time.monotonic() + timeout
    while not (breakers.cache.fresh and breakers.known_state(name) == state):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run(url: str, calls: int, rounds: int) -> dict[str, float | int | bool | str]:
    import pybreaker  # the baseline; a dev dependency
    from interlock import CircuitBreaker as InterlockBreaker  # the closest peer; a dev dependency
    from interlock.integrations.redis import RedisStorage

    prefix = f"fusebox-bench-{uuid.uuid4().hex[:8]}"
    plain = redis.Redis.from_url(url)
    settings = BreakerSettings(redis_url=url, key_prefix=prefix)
    breakers = Breakers.from_url(url, settings=settings, default_policy=BreakerPolicy(minimum_calls=10**6))
    assert breakers.wait_until_subscribed(10), "breaker subscriber did not connect"
    guarded = breakers.get("bench")
    refusing = breakers.get("bench-open")
    refusing.force_open(reason="benchmark: the OPEN path")
    assert wait_for_state(breakers, "bench-open", State.FORCED_OPEN), "forced open state not pushed"
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, plain, namespace=prefix + "-pybreaker")
    anchor = pybreaker.CircuitBreaker(fail_max=10**6, state_storage=storage)
    peer = InterlockBreaker(name="bench", storage=RedisStorage(plain, key_prefix=prefix + "-interlock:"))

    def fusebox_closed() -> None:
        with guarded.guard():
            pass

    def fusebox_open() -> None:
        try:
            with refusing.guard():
                pass
        except CallNotPermitted:
            pass

    allowed = allowance(guarded.policy, None, hard_time_limit=300)

    def fusebox_model_call() -> None:
        with guarded.guard(guarded.admit(), timeout=allowed.timeout, recorded=allowed.recorded):
            pass

    def fusebox_record() -> None:
        guarded.record(guarded.admit(), Outcome.SUCCESS, 0.0, wait=True)

    def pybreaker_call() -> None:
        anchor.call(lambda: None)

    def interlock_call() -> None:
        with peer:
            pass

    contenders = {"ping": plain.ping, "fusebox_closed": fusebox_closed, "fusebox_open": fusebox_open,
                  "fusebox_model_call": fusebox_model_call,
                  "fusebox_record": fusebox_record,
                  "pybreaker_redis": pybreaker_call, "interlock_redis": interlock_call}
    for fn in contenders.values():  # warm up: connections, scripts, first admission
        time_calls(fn, 200)
    breakers.flush(30)
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for key, fn in contenders.items():
            samples[key] += time_calls(fn, calls)
            if key in ("fusebox_closed", "fusebox_open", "fusebox_model_call"):
                breakers.flush(30)  # the write-behind thread must not steal the next contender's time

    breakers.flush(30)
    written = guarded.snapshot().totals.get("success", 0)
    expected = (200 + calls * rounds) * 3  # both kinds of guarded calls and synchronous records, warm-up included
    result: dict[str, float | int | bool | str] = {"calls_per_contender": calls * rounds, "redis_url_host": url.split("@")[-1]}
    for key, s in samples.items():
        result[f"{key}_p50_us"] = round(percentile(s, 50), 2)
        result[f"{key}_p99_us"] = round(percentile(s, 99), 2)
    result["fusebox_vs_ping"] = round(result["fusebox_closed_p50_us"] / result["ping_p50_us"], 3)  # type: ignore[operator]
    result["fusebox_vs_pybreaker"] = round(
        result["fusebox_closed_p50_us"] / result["pybreaker_redis_p50_us"], 3  # type: ignore[operator]
    )
    result["record_vs_ping"] = round(result["fusebox_record_p50_us"] / result["ping_p50_us"], 3)  # type: ignore[operator]
    result["fusebox_vs_interlock_p50"] = round(
        result["fusebox_closed_p50_us"] / result["interlock_redis_p50_us"], 3  # type: ignore[operator]
    )
    result["fusebox_vs_interlock_p99"] = round(
        result["fusebox_closed_p99_us"] / result["interlock_redis_p99_us"], 3  # type: ignore[operator]
    )
    result["outcomes_written"] = written
    result["outcomes_lost"] = expected - written
    result["outcomes_dropped"] = breakers.health().dropped_outcomes
    result["rejections_counted"] = refusing.snapshot().totals.get("rejected", 0)
    result["rejections_lost"] = 200 + calls * rounds - result["rejections_counted"]  # type: ignore[operator]
    result["fusebox_open_vs_closed_p50"] = round(
        result["fusebox_open_p50_us"] / result["fusebox_closed_p50_us"], 3  # type: ignore[operator]
    )
    # The OPEN path refuses without a round trip (counting rides the write-behind batches).
    result["target_open_met"] = (
        result["fusebox_open_p50_us"] <= result["ping_p50_us"] and result["rejections_lost"] == 0  # type: ignore[operator]
    )
    result["target_vs_ping_met"] = result["fusebox_vs_ping"] <= 1.0  # type: ignore[operator]
    result["target_vs_pybreaker_met"] = result["fusebox_vs_pybreaker"] <= 0.5  # type: ignore[operator]
    result["target_vs_interlock_met"] = (
        result["fusebox_vs_interlock_p50"] <= 1.0 and result["fusebox_vs_interlock_p99"] <= 2.0  # type: ignore[operator]
    )
    breakers.close()
    for key in plain.scan_iter(f"{prefix}*"):
        plain.delete(key)
    return result


def _failing_caller(url: str, prefix: str, policy_json: str, rate_hz: float, start: Any, results: Any) -> None:
    """One process calling a model that always fails, at about ``rate_hz``, until its
    breaker turns it away 50 times in a row; reports the calls that reached the model."""
    b = Breakers.from_url(url, settings=BreakerSettings(redis_url=url, key_prefix=prefix),
                          default_policy=BreakerPolicy.model_validate_json(policy_json))
    b.wait_until_subscribed(10)
    breaker = b.get("model")
    start.wait()
    reached = refused = 0
    period = 1.0 / rate_hz
    next_call = time.perf_counter()
    deadline = time.monotonic() + 30
    while refused < 50 and time.monotonic() < deadline:
        next_call += period
        try:
            with breaker.guard():
                reached += 1
                raise RuntimeError("model failing")
        except CallNotPermitted:
            refused += 1
        except RuntimeError:
            refused = 0
        delay = next_call - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    b.close()
    results.put(reached)


def self_trip(url: str, minimum_calls: int = 20, processes: int = 2, rate_hz: float = 1000.0) -> dict[str, Any]:
    """Failing calls that reach the model before a self-trip takes effect everywhere."""
    prefix = f"fusebox-bench-trip-{uuid.uuid4().hex[:8]}"
    policy = BreakerPolicy(minimum_calls=minimum_calls, failure_rate_threshold=0.5, wait_in_open=60)
    start, results = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_failing_caller, args=(url, prefix, policy.model_dump_json(), rate_hz, start,
                                                          results)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(3)  # every process subscribed
    start.set()
    reached = sum(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    plain = redis.Redis.from_url(url)
    for key in plain.scan_iter(f"{prefix}*"):
        plain.delete(key)
    return {"self_trip_minimum_calls": minimum_calls, "self_trip_processes": processes,
            "self_trip_rate_hz_each": rate_hz, "self_trip_calls_reaching_model": reached,
            "self_trip_overshoot_ratio": round(reached / minimum_calls, 3),
            "target_self_trip_met": reached <= 1.5 * minimum_calls}


def _flat_out(url: str, prefix: str, seconds: float, start: Any, results: Any) -> None:
    b = Breakers.from_url(url, settings=BreakerSettings(redis_url=url, key_prefix=prefix, redis_timeout=1.0),
                          default_policy=BreakerPolicy(minimum_calls=10**6))
    b.wait_until_subscribed(10)
    breaker = b.get("model")
    start.wait()
    calls = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        with breaker.guard():
            pass
        calls += 1
    b.flush(60)
    results.put((calls, b.health().dropped_outcomes))
    b.close()


def record_capacity(processes: int = 2, seconds: float = 3.0) -> dict[str, Any]:
    """Outcomes per second the write-behind path takes from ``processes`` processes, and the
    Redis CPU each one costs, on a Redis of its own (nothing else loads it)."""
    with RedisServer() as server:
        url = server.url
        prefix = "capacity"
        plain = redis.Redis.from_url(url)
        start, results = SPAWN.Event(), SPAWN.Queue()
        procs = [SPAWN.Process(target=_flat_out, args=(url, prefix, seconds, start, results))
                 for _ in range(processes)]
        for p in procs:
            p.start()
        time.sleep(3)

        def cpu() -> float:
            info = plain.info("cpu")
            return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

        cpu_before, began = cpu(), time.perf_counter()
        start.set()
        reports = [results.get(timeout=120) for _ in procs]
        elapsed = time.perf_counter() - began
        cpu_used = cpu() - cpu_before
        for p in procs:
            p.join(10)
        calls = sum(c for c, _ in reports)
        dropped = sum(d for _, d in reports)
        with Breakers.from_url(url, settings=BreakerSettings(redis_url=url, key_prefix=prefix),
                               subscribe=False) as reader:
            written = reader.get("model").snapshot().totals.get("success", 0)
    return {"capacity_processes": processes, "capacity_calls": calls, "capacity_outcomes_written": written,
            "capacity_outcomes_per_s": round(written / elapsed), "capacity_redis_cpu_us_per_outcome":
            round(cpu_used * 1e6 / max(written, 1), 2), "capacity_outcomes_dropped": dropped,
            "capacity_outcomes_lost": calls - written - dropped}


class _SteppedClock:
    """Seconds that move only when told: the record-cost rows step a whole window of
    traffic in moments (RedisBackend's test clock, the one path that is not Redis TIME)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _least_usec(plain: redis.Redis, rounds: int, calls: int, call: Any, requests: list[Any],
                clock: _SteppedClock) -> float:
    """EVALSHA's Redis CPU per call, the least of ``rounds`` rounds (a noisy neighbour only
    adds); ten calls a second of the test clock, so a bucket expires every tenth call."""
    best = float("inf")
    for _ in range(rounds):
        plain.config_resetstat()
        for i in range(calls):
            call(requests[i % 2])
            clock.now += 0.1
        best = min(best, float(plain.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]))
    return round(best, 2)


def record_cost(windows: tuple[int, ...] = (60, 600, 3600), calls: int = 600, rounds: int = 5) -> dict[str, Any]:
    """Redis CPU per record script call (``INFO commandstats``: EVALSHA's usec_per_call) with
    a window of each length full of traffic (a bucket in every second), on a Redis of its
    own, the least of ``rounds`` rounds of ``calls`` calls. Target (issue 22): <= 20 us at
    every allowed window length, and no growth with it."""
    from breaker.backend import RecordRequest
    from breaker.backends.redis import RedisBackend
    from breaker.keyspace import Keyspace

    result: dict[str, Any] = {}
    with RedisServer() as server:
        plain = redis.Redis.from_url(server.url)
        for window in windows:
            clock = _SteppedClock()
            backend = RedisBackend(plain, Keyspace(f"cost{window}"), clock=clock)
            policy = BreakerPolicy(window=window, minimum_calls=10**6)

            admission = backend.admit("model", policy, "bench")
            assert admission.ticket is not None  # CLOSED for the whole run: one ticket does
            # Half the calls fail (a storm that never trips: minimum_calls is out of reach),
            # so that buckets hold calls and failures.
            requests = [RecordRequest(name="model", policy=policy, ticket=admission.ticket, outcome=outcome,
                                      duration=0.01, who="bench") for outcome in (Outcome.SUCCESS, Outcome.FAILURE)]
            for i in range(window):  # fill the window: a bucket in every second
                backend.record(requests[i % 2])
                clock.now += 1.0
            result[f"record_redis_us_window_{window}"] = _least_usec(plain, rounds, calls, backend.record, requests,
                                                                     clock)
        # The same EVALSHA with a script that does nothing: what this machine's Redis
        # spends on any script call (to compare figures from different machines).
        noop = plain.register_script("return 1")
        args = backend._args("model", policy, "bench")
        result["record_redis_us_noop_script"] = _least_usec(
            plain, rounds, calls, lambda _: noop(keys=backend.keys.breaker("model"), args=args), requests, clock)
    result["target_record_cost_met"] = all(v <= 20.0 for k, v in result.items() if k.startswith("record_redis_us_w"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with ensure_redis() as url:
        result: dict[str, Any] = dict(run(url, args.calls, args.rounds))
        result.update(self_trip(url))
    result.update(record_capacity())
    result.update(record_cost())
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
