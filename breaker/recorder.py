"""Write-behind of call outcomes.

A guarded call must not wait on Redis to report how it went: the caller appends the
outcome to a queue (a ``deque``: one atomic append, no lock, no allocation beyond the
record) and a thread sends what piled up in batches; the Redis backend turns a batch into
as few atomic script calls as the rules allow (one per breaker and epoch) in one round
trip. Like Nagle's algorithm, the thread sends at once when it has been idle, and lingers
up to ``linger`` seconds to let a batch fill only while outcomes keep coming: an idle
process reports within a round trip, a busy one pays one script call per several
outcomes.

A failure, a timeout or a slow call is *urgent*: it is sent without lingering, so that a
model going bad trips the breaker as early as the window allows (in healthy operation they
are rare, so this costs nothing).

Refusals decided from the pushed state (an OPEN or FORCED_OPEN breaker turning a call away
without asking the store) ride along: the caller appends the breaker's name, and the thread
sends them as counts with the next batch, so that every refused call is counted, as in
resilience4j, without a round trip on the refusing path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

from breaker.backend import RecordRequest

log = logging.getLogger(__name__)


class Recorder:
    """A queue of outcomes and the thread that sends them.

    Parameters:
      send: sends one batch; it must not raise (the fail-safe turns store errors into local
        records), but if it does the batch is logged and counted as dropped.
      send_rejections: adds refusals (counts by breaker name) to the store's totals; the
        same rules as ``send``.
      max_batch: most outcomes per round trip.
      max_queue: outcomes that may wait; past it new ones are dropped and counted (per
        breaker, in :attr:`dropped_by`), so a stalled store can never grow a worker's memory
        without bound. It fills only when the store takes longer to answer than callers
        take to produce ``max_queue`` outcomes: while the store is unusable outcomes are
        decided locally and the queue drains at local speed.
      linger: seconds a busy recorder waits for a batch to fill (0: never waits).
    """

    def __init__(
        self,
        send: Callable[[Sequence[RecordRequest]], None],
        send_rejections: Callable[[Counter[str]], None] | None = None,
        max_batch: int = 1024,
        max_queue: int = 100_000,
        linger: float = 0.02,
    ) -> None:
        self._send = send
        self._send_rejections = send_rejections
        self._rejections: deque[str] = deque()
        self._rejecting = 0
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._linger = linger
        self._last_send = 0.0
        self._queue: deque[RecordRequest] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._sleeping = False
        self._urgent = False
        self._in_flight = 0
        self.dropped = 0
        self.dropped_by: Counter[str] = Counter()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="fusebox-breaker-recorder", daemon=True)
            self._thread.start()

    def submit(self, request: RecordRequest, urgent: bool = False) -> None:
        """Queues one outcome (the caller's whole cost: an append and a counter)."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            self.dropped += 1
            self.dropped_by[request.name] += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("breaker outcome queue full (%d); %d outcome(s) dropped so far", self._max_queue,
                            self.dropped)
            return
        queue.append(request)
        if urgent:
            self._urgent = True  # read by the thread before it lingers: no wake-up is lost
            self._wake.set()
        elif self._sleeping or len(queue) >= self._max_batch:
            self._wake.set()

    def reject(self, name: str) -> None:
        """Counts one refusal of breaker ``name`` (the caller's whole cost: an append)."""
        rejections = self._rejections
        if len(rejections) >= self._max_queue:
            self.dropped_by[name] += 1
            return
        rejections.append(name)
        if self._sleeping:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Outcomes queued or being sent (refusals, counters and not outcomes, are in
        :attr:`pending_refusals`)."""
        return len(self._queue) + self._in_flight

    @property
    def pending_refusals(self) -> int:
        """Refusals queued or being sent."""
        return len(self._rejections) + self._rejecting

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until the queue is empty and nothing is being sent; False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._queue or self._in_flight or self._rejections or self._rejecting:
            if time.monotonic() >= deadline:
                return False
            if self._thread is None or not self._thread.is_alive():
                self._drain()  # no thread (stopped, or a forked child before its first call)
                continue
            time.sleep(0.001)
            self._wake.set()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        self._thread = None

    def _take(self) -> list[RecordRequest]:
        batch: list[RecordRequest] = []
        queue = self._queue
        # Counted in flight before leaving the queue: flush() never sees both empty early.
        self._in_flight = min(len(queue), self._max_batch)
        while queue and len(batch) < self._max_batch:
            batch.append(queue.popleft())
        self._in_flight = len(batch)
        return batch

    def _drain(self) -> None:
        batch = self._take()
        if batch:
            self._send_batch(batch)
        if self._rejections:
            self._send_rejected()

    def _send_rejected(self) -> None:
        rejections = self._rejections
        counts: Counter[str] = Counter()
        self._rejecting = n = len(rejections)  # counted in flight before leaving the queue
        for _ in range(n):
            counts[rejections.popleft()] += 1
        try:
            if self._send_rejections is not None:
                self._send_rejections(counts)
        except Exception:  # noqa: BLE001 - the thread must survive a bug in one batch
            self.dropped_by.update(counts)
            log.exception("failed to count %d breaker refusals", n)
        finally:
            self._rejecting = 0

    def _send_batch(self, batch: list[RecordRequest]) -> None:
        try:
            self._send(batch)
        except Exception:  # noqa: BLE001 - the thread must survive a bug in one batch
            self.dropped += len(batch)
            for r in batch:
                self.dropped_by[r.name] += 1
            log.exception("failed to record %d breaker outcomes", len(batch))
        finally:
            self._last_send = time.monotonic()
            self._in_flight = 0

    def _run(self) -> None:
        queue = self._queue
        while not self._stop:
            if not queue and not self._rejections:
                self._sleeping = True
                if not queue and not self._rejections:  # re-checked: a submit between the two saw _sleeping False
                    self._wake.wait(0.1)
                self._sleeping = False
                self._wake.clear()
                continue
            busy = time.monotonic() - self._last_send < self._linger
            if busy and len(queue) < self._max_batch and not self._urgent:
                # Let the batch fill, unless an urgent outcome (or a full batch) wakes us.
                self._wake.wait(self._linger)
            self._urgent = False
            self._wake.clear()
            self._drain()
        self._drain()
