"""A Redis server the tests can hurt: killed (a crash), frozen (it keeps its connections
open and answers nothing), restarted on the same port."""

from __future__ import annotations

import os
import signal

from api import services


class RedisServer(services.RedisServer):
    """api.services' RedisServer, plus what only tests do to it (same parameters)."""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; a frozen server is thawed first, or it
        would never act on the SIGTERM.

        Parameters:
          timeout: seconds to wait for it to exit before SIGKILL.
        """
        self.resume()
        super().stop(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections open and answers nothing."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a frozen server answers again."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stopped and started again on the same port (from its append-only file when it
        is ``persistent``).

        Parameters:
          timeout: seconds to wait for each of the stop and the start.
        """
        self.stop()
        self.start(timeout)
        return self
