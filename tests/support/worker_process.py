"""A Celery worker process the tests can look inside: the pids of its pool."""

from __future__ import annotations

import subprocess

from api import services


class WorkerProcess(services.WorkerProcess):
    """api.services' WorkerProcess, plus what only tests ask of it (same parameters)."""

    def children(self) -> list[int]:
        """Pids of its pool processes."""
        if self.process is None:
            return []
        try:
            out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, timeout=5)
        except FileNotFoundError:
            return []
        return [int(p) for p in out.stdout.split()]
