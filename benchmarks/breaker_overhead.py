"""What a guarded call costs, against a Redis PING and against pybreaker's Redis storage.

    python -m benchmarks.breaker_overhead [--json] [--calls N] [--rounds R]

Everything is measured in one run on the same Redis (FUSEBOX_REDIS_URL when it answers,
else one started for the run), in interleaved rounds so that a noisy neighbour hurts every
contender alike. Reported, in microseconds per call:

- ping: one PING round trip (the unit of the targets);
- fusebox_closed: ``with breaker.guard(...)`` around nothing, breaker CLOSED: admission from
  the pushed state and the outcome queued for the write-behind thread;
- fusebox_record: one outcome written synchronously (``record(..., wait=True)``): the
  atomic script call that the write-behind thread makes, batched, for every call;
- pybreaker_redis: ``pybreaker.CircuitBreaker(state_storage=CircuitRedisStorage)`` around
  nothing (the Python anchor).

Targets (issue 2): fusebox_closed p50 <= ping p50, and <= half of pybreaker_redis p50.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import redis

from api.services import ensure_redis
from benchmarks._stats import percentile, time_calls
from breaker import BreakerPolicy, Breakers, BreakerSettings, Outcome


def run(url: str, calls: int, rounds: int) -> dict[str, float | int | bool | str]:
    import pybreaker  # the baseline; a dev dependency

    prefix = f"fusebox-bench-{uuid.uuid4().hex[:8]}"
    plain = redis.Redis.from_url(url)
    settings = BreakerSettings(redis_url=url, key_prefix=prefix)
    breakers = Breakers.from_url(url, settings=settings, default_policy=BreakerPolicy(minimum_calls=10**6))
    assert breakers.wait_until_subscribed(10), "breaker subscriber did not connect"
    guarded = breakers.get("bench")
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, plain, namespace=prefix + "-pybreaker")
    anchor = pybreaker.CircuitBreaker(fail_max=10**6, state_storage=storage)

    def fusebox_closed() -> None:
        with guarded.guard():
            pass

    def fusebox_record() -> None:
        guarded.record(guarded.admit(), Outcome.SUCCESS, 0.0, wait=True)

    def pybreaker_call() -> None:
        anchor.call(lambda: None)

    contenders = {"ping": plain.ping, "fusebox_closed": fusebox_closed, "fusebox_record": fusebox_record,
                  "pybreaker_redis": pybreaker_call}
    for fn in contenders.values():  # warm up: connections, scripts, first admission
        time_calls(fn, 200)
    breakers.flush(30)
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for key, fn in contenders.items():
            samples[key] += time_calls(fn, calls)
            if key == "fusebox_closed":
                breakers.flush(30)  # the write-behind thread must not steal the next contender's time

    breakers.flush(30)
    written = guarded.snapshot().totals.get("success", 0)
    expected = (200 + calls * rounds) * 2  # guarded calls and synchronous records, warm-up included
    result: dict[str, float | int | bool | str] = {"calls_per_contender": calls * rounds, "redis_url_host": url.split("@")[-1]}
    for key, s in samples.items():
        result[f"{key}_p50_us"] = round(percentile(s, 50), 2)
        result[f"{key}_p99_us"] = round(percentile(s, 99), 2)
    result["fusebox_vs_ping"] = round(result["fusebox_closed_p50_us"] / result["ping_p50_us"], 3)  # type: ignore[operator]
    result["fusebox_vs_pybreaker"] = round(
        result["fusebox_closed_p50_us"] / result["pybreaker_redis_p50_us"], 3  # type: ignore[operator]
    )
    result["record_vs_ping"] = round(result["fusebox_record_p50_us"] / result["ping_p50_us"], 3)  # type: ignore[operator]
    result["outcomes_written"] = written
    result["outcomes_lost"] = expected - written
    result["target_vs_ping_met"] = result["fusebox_vs_ping"] <= 1.0  # type: ignore[operator]
    result["target_vs_pybreaker_met"] = result["fusebox_vs_pybreaker"] <= 0.5  # type: ignore[operator]
    breakers.close()
    for key in plain.scan_iter(f"{prefix}*"):
        plain.delete(key)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with ensure_redis() as url:
        result = run(url, args.calls, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
