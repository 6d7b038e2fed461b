"""Who a process is, in events, permits and logs: ``host:pid``."""

from __future__ import annotations

import os
import socket

_HOST = socket.gethostname()
_identity = f"{_HOST}:{os.getpid()}"


def _forked() -> None:
    global _identity
    _identity = f"{_HOST}:{os.getpid()}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def process_identity() -> str:
    """``host:pid`` of the calling process (a forked child gets its own; where there is no
    fork, the pid never changes)."""
    return _identity
