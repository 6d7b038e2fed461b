"""The write-behind queue: bounded, and what it drops is counted per breaker, not lost
silently; failures are not held back by the linger."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from breaker import Outcome, Ticket
from breaker.backend import RecordRequest
from breaker.policy import BreakerPolicy
from breaker.recorder import Recorder
from breaker.state import State

POLICY = BreakerPolicy()


def request(name: str, outcome: Outcome = Outcome.SUCCESS) -> RecordRequest:
    ticket = Ticket(breaker=name, epoch=0, state=State.CLOSED)
    return RecordRequest(name, POLICY, ticket, outcome, 0.001, "test:1")


def test_a_full_queue_counts_what_it_drops_per_breaker() -> None:
    release = threading.Event()
    sent: list[RecordRequest] = []

    def stalled_store(batch: Sequence[RecordRequest]) -> None:
        release.wait(10)
        sent.extend(batch)

    recorder = Recorder(stalled_store, max_batch=10, max_queue=50)
    recorder.start()
    recorder.submit(request("ocr"))  # taken by the thread, which then stalls
    time.sleep(0.1)
    for i in range(120):
        recorder.submit(request("ocr" if i % 2 else "ner"))
    assert recorder.dropped == 70
    assert recorder.dropped_by == {"ocr": 35, "ner": 35}
    release.set()
    assert recorder.flush(10)
    assert len(sent) == 51  # nothing that was queued is lost
    recorder.stop()


def test_a_failure_is_sent_without_waiting_for_the_linger() -> None:
    batches: list[list[Outcome]] = []

    def store(batch: Sequence[RecordRequest]) -> None:
        batches.append([r.outcome for r in batch])

    recorder = Recorder(store, linger=5.0)  # a linger no test could wait out
    recorder.start()
    recorder.submit(request("ocr"))
    assert recorder.flush(2)
    recorder.submit(request("ocr"))  # busy now: this one would linger for 5 s...
    recorder.submit(request("ocr", Outcome.FAILURE), urgent=True)  # ...but a failure wakes it
    deadline = time.monotonic() + 2  # (no flush(): it would wake the thread itself)
    while sum(map(len, batches)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [o for b in batches for o in b] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE]
    recorder.stop()
