"""Who a process is, in events, permits and logs: ``host:pid``."""

from __future__ import annotations

import os
import socket

_HOST = socket.gethostname()


def process_identity() -> str:
    """``host:pid`` of the calling process (read at each call: a forked child has its own)."""
    return f"{_HOST}:{os.getpid()}"
