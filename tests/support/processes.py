"""Code that tests run in other OS processes (spawned, so each starts clean)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from breaker import BreakerPolicy, Breakers, BreakerSettings, CallNotPermitted, Outcome

SPAWN = multiprocessing.get_context("spawn")


def make_breakers(url: str, prefix: str, policy: BreakerPolicy | None = None, **settings: Any) -> Breakers:
    return Breakers.from_url(
        url,
        settings=BreakerSettings(redis_url=url, key_prefix=prefix, **settings),
        default_policy=policy or BreakerPolicy(),
    )


def hammer(url: str, prefix: str, policy_json: str, calls: int, start: Any, results: Any) -> None:
    """Phase 1 of the contention test: `calls` admissions, 60 % of the admitted ones fail."""
    # Contention, not the fail-safe, is under test: a loaded machine must not time out.
    b = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json), redis_timeout=1.0)
    b.wait_until_subscribed()
    start.wait()
    recorded = rejected = 0
    for i in range(calls):
        try:
            ticket = b.get("shared").admit()
        except CallNotPermitted:
            rejected += 1
            continue
        b.get("shared").record(ticket, Outcome.FAILURE if i % 5 < 3 else Outcome.SUCCESS, 0.001)
        recorded += 1
    b.flush(30)
    b.close()
    results.put({"recorded": recorded, "rejected": rejected})


def grab_permits(url: str, prefix: str, policy_json: str, threads: int, not_before: float, start: Any, results: Any) -> None:
    """Phase 2: every thread asks for admission in a tight loop for half a second."""
    # Contention, not the fail-safe, is under test: a loaded machine must not time out.
    b = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json), redis_timeout=1.0)
    b.wait_until_subscribed()
    start.wait()
    time.sleep(max(0.0, not_before - time.time()))
    granted: list[int] = []
    lock = threading.Lock()

    def ask() -> None:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                t = b.get("shared").admit()
            except CallNotPermitted:
                continue
            with lock:
                granted.append(t.permit if t.permit is not None else -1)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    b.close()
    results.put(granted)


def listen(url: str, prefix: str, ready: Any, results: Any, expect: int) -> None:
    """Reports (wall time received, event) for the first `expect` transitions it hears."""
    b = make_breakers(url, prefix)
    heard: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()

    def on_event(event: Any) -> None:
        if event.kind == "transition":
            heard.append((time.time(), event.model_dump(mode="json")))
            if len(heard) >= expect:
                done.set()

    b.add_listener(on_event)
    b.get("shared")
    b.wait_until_subscribed(10)
    ready.put(True)
    done.wait(20)
    b.close()
    results.put(heard)


def guarded_loop(url: str, prefix: str, policy_json: str, control: str, results: Any) -> None:
    """A process calling a model through the shared breaker until ``<control>/stop``
    exists; the model fails while ``<control>/fail`` exists. Reports what happened: model
    calls (what reached the model), outcomes, rejections, store losses and rejoins, and
    any exception other than CallNotPermitted (which must never happen)."""
    import json
    import os

    b = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json),
                      redis_timeout=0.05, refresh_interval=0.2, reconnect_interval=0.1)
    store_events: list[str] = []
    b.add_listener(lambda e: store_events.append(e.reason.split(" ")[0]) if e.kind == "store" else None)
    counts = {"model_calls": 0, "model_failures": 0, "ok": 0, "rejected": 0, "errors": 0}
    errors: list[str] = []
    breaker = b.get("model")
    status = os.path.join(control, f"status-{os.getpid()}.json")
    next_status = 0.0
    while not os.path.exists(os.path.join(control, "stop")):
        if time.monotonic() >= next_status:  # progress, for a test that waits on it
            next_status = time.monotonic() + 0.2
            with open(status + ".tmp", "w") as f:
                json.dump({**counts, "degraded": b.degraded}, f)
            os.replace(status + ".tmp", status)
        try:
            with breaker.guard():
                counts["model_calls"] += 1
                if os.path.exists(os.path.join(control, "fail")):
                    counts["model_failures"] += 1
                    raise RuntimeError("model failing")
            counts["ok"] += 1
        except CallNotPermitted:
            counts["rejected"] += 1
        except RuntimeError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported: a guarded call must never see it
            counts["errors"] += 1
            errors.append(repr(exc))
        time.sleep(0.002)
    b.flush(10)
    health = b.health()
    b.close()
    results.put(json.dumps({**counts, "store_events": store_events, "errors_seen": errors[:5],
                            "health": health.model_dump(mode="json")}))


def refuse_from_cache(url: str, prefix: str, name: str, calls: int, results: Any) -> None:
    """Asks a FORCED_OPEN breaker ``calls`` times once its pushed state is trusted: every
    refusal is decided in this process, without a round trip (issue 27: counted anyway)."""
    b = make_breakers(url, prefix, redis_timeout=1.0)
    b.wait_until_subscribed()
    breaker = b.get(name)
    deadline = time.monotonic() + 30
    while not (b.cache.fresh and b.known_state(name).rejects) and time.monotonic() < deadline:
        time.sleep(0.01)
    asked_before, refused = b.store_admissions, 0
    for _ in range(calls):
        try:
            breaker.admit()
        except CallNotPermitted:
            refused += 1
    from_cache = b.store_admissions == asked_before
    b.flush(30)
    b.close()
    results.put({"refused": refused, "from_cache": from_cache})
