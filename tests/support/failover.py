"""A guarded caller for the failover tests, run in a process of its own (spawned).

It calls a few breakers non-stop on the Redis URL it is given and keeps score of what each
call gave, split by whether the process was deciding with the shared store or with its
local fail-safe breaker at the time. The score is written as JSON to a file every few
milliseconds, so the test reads it at any moment without talking to the process.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from breaker import BreakerEvent, BreakerPolicy, CallNotPermitted
from tests.support.processes import make_breakers


class ModelDown(RuntimeError):
    """What the simulated model raises while it is failing."""


def read_score(path: str) -> dict[str, Any]:
    """The caller's latest score ({} before its first write)."""
    try:
        with open(path, encoding="utf-8") as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def call_forever(url: str, prefix: str, policy_json: str, names: list[str], score_path: str,
                 fail_path: str, stop_path: str) -> None:
    """Calls every breaker in ``names`` in turn until ``stop_path`` exists.

    Parameters:
      url, prefix: where the shared breakers are.
      policy_json: the policy of every breaker (JSON of a BreakerPolicy).
      names: the breakers to call.
      score_path: where to write the score.
      fail_path: while this file exists, calls to the breaker ``flaky`` fail (the model is
        down); every other call succeeds.
      stop_path: the caller stops when this file appears.

    The score: ``calls`` maps ``"<breaker>|<shared or local>|<result>"`` to a count, where
    result is ``ok``, ``rejected`` (CallNotPermitted), ``failed`` (the model's own error)
    or ``raised <type>: <message>`` (anything else reaching the caller: must never happen);
    ``store`` counts the ``store`` events heard (lost / regained); ``degraded`` is the
    process's state now; ``pid``.
    """
    breakers = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json))
    calls: Counter[str] = Counter()
    store: Counter[str] = Counter()

    def on_event(event: BreakerEvent) -> None:
        if event.kind == "store":
            store["lost" if "lost" in (event.reason or "") else "regained"] += 1

    breakers.add_listener(on_event)
    for name in names:
        breakers.get(name)
    breakers.wait_until_subscribed(10)
    last_write = 0.0
    while not os.path.exists(stop_path):
        for name in names:
            mode = "local" if breakers.degraded else "shared"
            try:
                with breakers.guard(name):
                    if name == "flaky" and os.path.exists(fail_path):
                        raise ModelDown("model down")
                result = "ok"
            except CallNotPermitted:
                result = "rejected"
            except ModelDown:
                result = "failed"
            except BaseException as exc:  # noqa: BLE001 - the test asserts none gets here
                result = f"raised {type(exc).__name__}: {exc}"[:200]
            calls[f"{name}|{mode}|{result}"] += 1
        now = time.monotonic()
        if now - last_write > 0.02:
            _write(score_path, calls, store, breakers.degraded)
            last_write = now
        time.sleep(0.002)
    breakers.flush(10)
    breakers.close()
    _write(score_path, calls, store, breakers.degraded, done=True)


def _write(path: str, calls: Counter[str], store: Counter[str], degraded: bool, done: bool = False) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"calls": dict(calls), "store": dict(store), "degraded": degraded, "done": done,
                   "pid": os.getpid()}, f)
    os.replace(tmp, path)
