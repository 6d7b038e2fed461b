"""Run under a skewed clock (faketime, or the fallback shim below) by test_clock_skew.py.

It trips a shared breaker with failures, then reports what it decided and when, as JSON:
a process that trusted its own wall clock would think the wait ended hours ago (clock
ahead) or never will (clock behind).
"""

from __future__ import annotations

import json
import sys
import time

from breaker import BreakerPolicy, CallNotPermitted, Outcome
from tests.support.processes import make_breakers


def main(url: str, prefix: str, wait: float) -> None:
    policy = BreakerPolicy(minimum_calls=3, wait_in_open=wait, permitted_calls_in_half_open=1,
                           call_timeout=1, max_wait_in_half_open=5)
    b = make_breakers(url, prefix, policy)
    assert b.wait_until_subscribed(10)
    ocr = b.get("skewed")
    for _ in range(3):
        ocr.record(ocr.admit(), Outcome.FAILURE, 0.01, wait=True)
    report: dict[str, object] = {"own_clock": time.time(), "state_after_failures": ocr.state.value}
    try:
        ocr.admit()
        report["admitted_right_after_trip"] = True
    except CallNotPermitted as refused:
        report["admitted_right_after_trip"] = False
        report["retry_after"] = refused.retry_after
    started = time.monotonic()
    while True:
        try:
            ticket = ocr.admit()
            break
        except CallNotPermitted:
            time.sleep(0.01)
    report["admitted_after"] = time.monotonic() - started
    report["probe_state"] = ticket.state.value
    report["event_at_ms"] = b.history("skewed")[0].at_ms
    b.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
