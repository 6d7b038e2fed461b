"""A real Flower dashboard on a fleet, for the tests that read its API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from api.services import free_port
from tests.support.fleet import Fleet
from tests.support.waiting import wait_for

#: The basic-auth user and password the dashboard is started with.
AUTH = ("admin", "pw")


@contextmanager
def running_flower(fleet: Fleet) -> Iterator[str]:
    """Starts `celery -A workers flower` with basic auth on a free loopback port; yields its
    base URL once its API answers and its event receiver has had time to subscribe."""
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1",
         f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
        env={**os.environ, **fleet.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(base + "/api/workers", auth=AUTH, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30, interval=0.2), "flower did not start"
        time.sleep(1.0)  # flower's event receiver subscribes after its HTTP server starts
        yield base
    finally:
        flower.terminate()
        flower.wait(10)
