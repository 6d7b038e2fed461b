"""A RabbitMQ for the tests: the one at FUSEBOX_TEST_AMQP_URL (default the local
``amqp://guest:guest@127.0.0.1:5672//``) when it answers, else a ``rabbitmq-server`` these
tests start (Debian's package; ``./dev test`` installs it as root). Each fleet gets a vhost
of its own (``rabbitmqctl add_vhost``), so queue names never collide between tests.

When neither can be had the tests that need RabbitMQ are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from urllib.parse import quote, urlsplit

from kombu import Connection

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ answers and none could be started here."""


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def _ctl(*args: str, timeout: float = 60.0) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RabbitUnavailable("rabbitmqctl is not installed (apt-get install rabbitmq-server)")
    done = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RabbitUnavailable(f"rabbitmqctl {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


class Rabbit:
    """The RabbitMQ node the tests use; started here (and stopped by :meth:`close`) only when
    none answered."""

    def __init__(self) -> None:
        self.url = os.environ.get("FUSEBOX_TEST_AMQP_URL", DEFAULT_URL)
        self.process: subprocess.Popen[bytes] | None = None
        if answers(self.url):
            _ctl("list_vhosts")  # fleets need vhosts of their own: rabbitmqctl must work here
            return
        server = shutil.which("rabbitmq-server")
        if server is None:
            raise RabbitUnavailable(
                f"no RabbitMQ answers at {self.url} and rabbitmq-server is not installed "
                "(apt-get install rabbitmq-server, or ./dev test as root)"
            )
        self.process = subprocess.Popen([server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RabbitUnavailable(f"rabbitmq-server exited with {self.process.returncode}")
            if answers(self.url, 1.0):
                return
            time.sleep(1.0)
        self.close()
        raise RabbitUnavailable(f"rabbitmq-server did not answer at {self.url} within 120 s")

    def vhost_url(self, vhost: str) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/{quote(vhost, safe='')}"

    def add_vhost(self) -> str:
        """A fresh vhost the guest user may use; returns its name."""
        vhost = f"fusebox-test-{uuid.uuid4().hex[:10]}"
        _ctl("add_vhost", vhost)
        _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def delete_vhost(self, vhost: str) -> None:
        try:
            _ctl("delete_vhost", vhost)
        except (RabbitUnavailable, subprocess.TimeoutExpired):
            pass

    def bindings(self, vhost: str) -> list[tuple[str, str, str]]:
        """(exchange, queue, routing key) of every queue binding in ``vhost`` but those of
        RabbitMQ's default exchange."""
        out = _ctl("list_bindings", "-p", vhost, "--quiet", "--no-table-headers",
                   "source_name", "destination_name", "destination_kind", "routing_key")
        found = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0] and parts[2] == "queue":
                found.append((parts[0], parts[1], parts[3]))
        return found

    def unacked(self, vhost: str) -> int:
        """Messages delivered to consumers and not yet acknowledged, over every queue."""
        out = _ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages_unacknowledged")
        return sum(int(line.split("\t")[1]) for line in out.splitlines() if line.count("\t") == 1)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                _ctl("stop", timeout=60)
            except (RabbitUnavailable, subprocess.TimeoutExpired):
                self.process.terminate()
            self.process.wait(60)
        self.process = None


_rabbit: Rabbit | None = None


def rabbit() -> Rabbit:
    """The shared node (started at most once per test session)."""
    global _rabbit
    if _rabbit is None:
        _rabbit = Rabbit()
    return _rabbit
