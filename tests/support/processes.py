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
    b = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json))
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
    b = make_breakers(url, prefix, BreakerPolicy.model_validate_json(policy_json))
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
