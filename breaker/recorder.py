"""Write-behind of call outcomes.

A guarded call must not wait on Redis to report how it went: a thread takes outcomes off a
queue and sends them in batches; the Redis backend turns a batch into as few atomic script
calls as the rules allow (one per breaker and epoch) in one round trip. Like Nagle's
algorithm, the thread sends at once when it has been idle, and lingers up to ``linger``
seconds to let a batch fill only while outcomes keep coming: an idle process reports within
a round trip, a busy one pays one script call per several outcomes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from breaker.backend import RecordRequest

log = logging.getLogger(__name__)


class Recorder:
    """A queue of outcomes and the thread that sends them.

    Parameters:
      send: sends one batch; it must not raise (the fail-safe turns store errors into local
        records), but if it does the batch is logged and counted as dropped.
      max_batch: most outcomes per round trip.
      max_queue: outcomes that may wait; past it new ones are dropped and counted, so a
        stalled store can never grow a worker's memory without bound.
      linger: seconds a busy recorder waits for a batch to fill (0: never waits).
    """

    def __init__(
        self,
        send: Callable[[Sequence[RecordRequest]], None],
        max_batch: int = 256,
        max_queue: int = 100_000,
        linger: float = 0.02,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._linger = linger
        self._last_send = 0.0
        self._queue: queue.Queue[RecordRequest | None] = queue.Queue(max_queue)
        self._idle = threading.Condition()
        self._unfinished = 0
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="fusebox-breaker-recorder", daemon=True)
            self._thread.start()

    def submit(self, request: RecordRequest) -> None:
        with self._idle:
            self._unfinished += 1
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._done(1)
            self.dropped += 1
            log.warning("breaker outcome queue full; dropped an outcome of %s", request.name)

    @property
    def pending(self) -> int:
        return self._unfinished

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every submitted outcome was sent; returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._thread = None

    def _done(self, n: int) -> None:
        with self._idle:
            self._unfinished -= n
            if not self._unfinished:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            busy = time.monotonic() - self._last_send < self._linger
            until = time.monotonic() + (self._linger if busy else 0.0)
            while len(batch) < self._max_batch:
                try:
                    wait = until - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._send(batch)
            except Exception:  # noqa: BLE001 - the thread must survive a bug in one batch
                self.dropped += len(batch)
                log.exception("failed to record %d breaker outcomes", len(batch))
            finally:
                self._last_send = time.monotonic()
                self._done(len(batch))
            if stop:
                return
