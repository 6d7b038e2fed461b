"""A Redis Sentinel deployment of the test's own on loopback: one master, its replicas and
three sentinels (``redis-server --sentinel``), with a URL fusebox understands.

    with SentinelCluster() as cluster:
        url = cluster.url                      # sentinel://127.0.0.1:p1;.../0?master_name=fusebox
        cluster.wait_replicated()              # every write so far is on the replica
        old = cluster.kill_master()            # kill -9 (or cluster.failover(): SENTINEL FAILOVER)
        new = cluster.wait_failover(old.port)  # the replica the sentinels promoted
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from urllib.parse import quote

import redis

from api.services import ServiceError, find_redis_server, free_port
from tests.support.redis_server import RedisServer


def _quoted(value: str) -> str:
    """A value as a double-quoted string of a Redis config file."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SentinelCluster:
    """One master, ``replicas`` replicas and ``sentinels`` sentinels, all on 127.0.0.1.

    Parameters:
      master_name: the name the sentinels monitor the master under.
      replicas: how many replicas of the master.
      sentinels: how many sentinels (quorum: a majority of them).
      down_after_ms: how long a master must not answer before a sentinel calls it down
        (production default 30 000; short here so a failover takes a few seconds).
      password: the Redis servers' ``requirepass`` (and ``masterauth``), if any.
      sentinel_password: the sentinels' own ``requirepass``, if any.
    """

    def __init__(
        self,
        master_name: str = "fusebox",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.quorum = sentinels // 2 + 1
        auth = ["--masterauth", password] if password else []
        self.master = RedisServer(password=password, extra_args=auth)
        self.replicas = [
            RedisServer(password=password, extra_args=auth + ["--replicaof", "127.0.0.1", str(self.master.port)])
            for _ in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._dir = tempfile.mkdtemp(prefix="fusebox-sentinel-")
        self._sentinels: list[subprocess.Popen[bytes] | None] = [None] * sentinels

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ``FUSEBOX_REDIS_URL`` that reaches the current master through the sentinels."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        parts = ";".join(f"sentinel://{auth}127.0.0.1:{port}" for port in self.sentinel_ports)
        query = f"master_name={self.master_name}"
        if self.sentinel_password:
            query += f"&sentinel_password={quote(self.sentinel_password, safe='')}"
        return f"{parts}/0?{query}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def direct(self, server: RedisServer) -> redis.Redis:
        """A plain client of one server (not through the sentinels)."""
        return redis.Redis(host="127.0.0.1", port=server.port, password=self.password,
                           socket_timeout=2, socket_connect_timeout=2)

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index], password=self.sentinel_password,
                           socket_timeout=2, socket_connect_timeout=2)

    def master_port(self, index: int = 0) -> int | None:
        """Where sentinel ``index`` says the master is now (None if it cannot say)."""
        try:
            found = self.sentinel_client(index).sentinel_get_master_addr_by_name(self.master_name)
        except (redis.RedisError, OSError):
            return None
        return int(found[1]) if found else None

    def current_master(self) -> RedisServer:
        port = self.master_port()
        if port is None:
            raise ServiceError("the sentinels name no master")
        return self.server_on(port)

    # -- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> SentinelCluster:
        for server in self.servers:
            server.start()
        for index in range(len(self.sentinel_ports)):
            self._start_sentinel(index)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"the sentinel deployment did not settle within {timeout}s; logs in {self._dir}")

    def _ready(self) -> bool:
        """Every sentinel names the master and knows the replicas and the other sentinels,
        and every replica's link to the master is up."""
        try:
            for index in range(len(self.sentinel_ports)):
                client = self.sentinel_client(index)
                master = client.sentinel_master(self.master_name)
                if int(master["port"]) != self.master.port:
                    return False
                if int(master.get("num-other-sentinels", 0)) < len(self.sentinel_ports) - 1:
                    return False
                if int(master.get("num-slaves", 0)) < len(self.replicas):
                    return False
            for replica in self.replicas:
                if self.direct(replica).info("replication").get("master_link_status") != "up":
                    return False
        except (redis.RedisError, OSError, KeyError):
            return False
        return True

    def _start_sentinel(self, index: int) -> None:
        port = self.sentinel_ports[index]
        conf = os.path.join(self._dir, f"sentinel-{port}.conf")
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            "daemonize no",
            f"dir {self._dir}",
            f"logfile {os.path.join(self._dir, f'sentinel-{port}.log')}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {max(3 * self.down_after_ms, 3000)}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {_quoted(self.password)}")
        if self.sentinel_password:
            secret = _quoted(self.sentinel_password)
            lines += [f"requirepass {secret}", f"sentinel sentinel-pass {secret}"]
        with open(conf, "w", encoding="utf-8") as f:  # the sentinel rewrites it: one file each
            f.write("\n".join(lines) + "\n")
        self._sentinels[index] = subprocess.Popen(
            [find_redis_server(), conf, "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def stop(self) -> None:
        for proc in self._sentinels:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._sentinels = [None] * len(self._sentinels)
        for server in self.servers:
            server.stop()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for server in self.servers:
            shutil.rmtree(server._dir, ignore_errors=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- replication and failover ----------------------------------------------------------

    def wait_replicated(self, timeout: float = 10.0) -> bool:
        """True once every replica has acknowledged every write the current master has
        accepted so far (its replication offset reached the master's)."""
        master = self.direct(self.current_master())
        target = int(master.info("replication")["master_repl_offset"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = master.info("replication")
            offsets = [int(v["offset"]) for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if offsets and all(o >= target for o in offsets):
                return True
            time.sleep(0.02)
        return False

    def kill_master(self) -> RedisServer:
        """kill -9 of the current master; returns it (dead)."""
        old = self.current_master()
        old.kill()
        return old

    def failover(self) -> RedisServer:
        """A coordinated failover (``SENTINEL FAILOVER``): the master is demoted to a replica
        while it runs and clients are connected to it; returns it (alive, soon a replica)."""
        old = self.current_master()
        self.sentinel_client().execute_command("SENTINEL", "FAILOVER", self.master_name)
        return old

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Waits until every sentinel names a new master other than ``old_port`` and that
        master accepts writes; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self.master_port(i) for i in range(len(self.sentinel_ports))}
            if len(ports) == 1 and None not in ports and old_port not in ports:
                new = self.server_on(ports.pop())  # type: ignore[arg-type]
                try:
                    if self.direct(new).info("replication")["role"] == "master":
                        return new
                except (redis.RedisError, OSError):
                    pass
            time.sleep(0.05)
        raise ServiceError(f"no failover within {timeout}s; logs in {self._dir}")
