"""One caller process of the nemesis run (benchmarks/nemesis.py): guarded calls to a model
whose failure rate follows the run's schedule, every call logged; it may fork a child
mid-run (as Celery's prefork pool does), which calls and logs on its own.

    python -m benchmarks._nemesis_caller CONFIG_JSON

Log lines (JSON, one per call, ``calls-<caller>-<pid>.jsonl``): ``t`` admission (wall
clock), ``e`` end, ``k`` ``rej``/``ok``/``fail``, ``o`` the outcome recorded, ``s`` the state
that refused, ``inc``/``ep`` the ticket's incarnation and epoch, ``p`` its probe permit,
``l`` decided by the local breaker. The last line (``k`` ``end``) holds the process's
health after its final hand-back.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from typing import Any

from breaker import BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted

NAME = "model"


class ModelDown(RuntimeError):
    pass


def phase_at(schedule: list[list[float]], elapsed: float) -> tuple[float, float]:
    """(failure rate, hang seconds) of the model at ``elapsed`` seconds into the run."""
    for start, end, rate, hang in schedule:
        if start <= elapsed < end:
            return rate, hang
    return 0.0, 0.0


def calls(b: Breakers, cfg: dict[str, Any], rng: random.Random, until: float, tag: str,
          fork_at: float | None) -> None:
    t0 = cfg["t0"]
    out = open(os.path.join(cfg["out"], f"calls-{tag}-{os.getpid()}.jsonl"), "w", buffering=1 << 16)
    breaker = b.get(NAME)
    forked = fork_at is None
    while time.time() < until:
        now = time.time()
        if not forked and now - t0 >= fork_at:  # type: ignore[operator]
            forked = True
            out.flush()
            pid = os.fork()
            if pid == 0:
                out.close()
                code = 1
                try:
                    calls(b, cfg, random.Random(rng.random()), min(until, time.time() + cfg["child_seconds"]),
                          f"{tag}c", None)
                    code = 0
                finally:
                    os._exit(code)
            cfg.setdefault("children", []).append(pid)
        rate, hang = phase_at(cfg["schedule"], now - t0)
        guarded = breaker.guard()
        try:
            ticket = guarded.__enter__()
        except CallNotPermitted as exc:
            out.write(json.dumps({"t": now, "k": "rej", "s": exc.state.value, "l": b.degraded}) + "\n")
            time.sleep(cfg["pause"])
            continue
        fail = rng.random() < rate
        try:
            time.sleep(hang if hang else rng.uniform(0.0005, 0.003))
            if fail:
                raise ModelDown("model down")
            guarded.__exit__(None, None, None)
        except ModelDown as exc:
            guarded.__exit__(type(exc), exc, None)
        out.write(json.dumps({"t": now, "e": time.time(), "k": "fail" if fail else "ok",
                              "o": guarded.outcome.value if guarded.outcome else None,
                              "inc": ticket.incarnation, "ep": ticket.epoch, "p": ticket.permit,
                              "l": ticket.local}) + "\n")
        time.sleep(cfg["pause"])
    # The end: every outcome written or handed back before the health is read.
    deadline = time.time() + cfg["settle_seconds"]
    while time.time() < deadline:
        b.known_state(NAME)
        b.flush(2)
        health = b.health()
        if not health.degraded and health.tallied_outcomes == 0 and health.pending_outcomes == 0:
            break
        time.sleep(0.1)
    for pid in cfg.get("children", []):
        os.waitpid(pid, 0)
    out.write(json.dumps({"k": "end", "health": b.health().model_dump(mode="json")}) + "\n")
    out.close()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.ERROR)  # the checker reads the logs; warnings would drown a failure
    policy = BreakerPolicy.model_validate(cfg["policy"])
    settings = BreakerSettings(redis_url=cfg["url"], key_prefix=cfg["prefix"], redis_timeout=0.05,
                               refresh_interval=cfg["refresh_interval"], reconnect_interval=0.2)
    b = Breakers.from_url(cfg["url"], settings=settings, default_policy=policy)
    b.wait_until_subscribed(5)
    rng = random.Random(cfg["seed"])
    calls(b, cfg, rng, cfg["t0"] + cfg["seconds"], str(cfg["caller"]), cfg.get("fork_at"))
    b.close()


if __name__ == "__main__":
    main()
