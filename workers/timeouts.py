"""A per-call time limit that follows the breaker policy live.

Celery's soft time limit is fixed per task message; the model's ``call_timeout`` lives in
the breaker policy and an operator may change it at any time. In a prefork pool process
(the task runs on the main thread) an interval timer raises CallTimeout in the call. A call
stuck inside C code that never returns to Python is ended by the task's hard time limit
instead (see workers.request).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from breaker.errors import CallTimeout


@contextmanager
def call_timeout(seconds: float) -> Iterator[None]:
    """Raises ``CallTimeout`` in the ``with`` body after ``seconds`` (SIGALRM; main thread only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield  # threads pools: only Celery's own limits apply
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise CallTimeout(f"model call exceeded its {seconds:g}s timeout")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
