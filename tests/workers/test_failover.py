"""A worker fleet on Redis Sentinel (broker, result backend, breakers, payloads, all on the
``sentinel://`` URL) loses its master to kill -9 while jobs keep coming: every submitted
job gets an answer.

Submissions pause for the instant of the kill, after the replica has acknowledged every
write: Redis replicates asynchronously, so a job the master accepted and had not yet sent
to the replica when it died would be lost (docs/breaker.md, "Redis Sentinel"). Everything
submitted while the sentinels elect and promote the replica must still be answered.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from api.client import FuseboxClient, JobHandle
from api.services import WorkerProcess
from tests.support.fleet import wait_for
from tests.support.sentinel import SentinelCluster
from workers.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Submitter:
    """A thread submitting echo jobs one after another, which the test can hold."""

    def __init__(self, client: FuseboxClient) -> None:
        self.client = client
        self.handles: list[JobHandle] = []
        self.started: list[float] = []  # monotonic time each submission began
        self.errors: list[str] = []
        self.go = threading.Event()
        self.idle = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.go.is_set():
                self.idle.set()
                self.go.wait(0.05)
                continue
            self.idle.clear()
            started = time.monotonic()
            try:
                self.handles.append(self.client.submit_echo(f"job {len(self.handles)}"))
                self.started.append(started)
            except Exception as exc:  # noqa: BLE001 - the test asserts there is none
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)

    def hold(self) -> None:
        """Stops submitting; returns once no submission is under way."""
        self.go.clear()
        self.idle.clear()
        assert self.idle.wait(60)


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(password="master secret", sentinel_password="sentinel secret") as c:
        yield c


def test_no_job_is_lost_across_a_sentinel_failover(cluster: SentinelCluster) -> None:
    env = {
        "FUSEBOX_REDIS_URL": cluster.url,
        "FUSEBOX_KEY_PREFIX": f"failover-{uuid.uuid4().hex[:8]}",
        "FUSEBOX_PRELOAD": "none",
        "FUSEBOX_VISIBILITY_TIMEOUT": "30",
    }
    client = FuseboxClient(Settings.from_env(env))
    workers = [WorkerProcess(["echo"], "echo-sentinel", 2, env), WorkerProcess(["fallback"], "cpu-sentinel", 1, env)]
    submitter = Submitter(client)
    try:
        for worker in workers:
            worker.start(client.app)
        submitter.thread.start()
        submitter.go.set()
        assert wait_for(lambda: len(submitter.handles) >= 20, 60)
        submitter.hold()
        before = list(submitter.handles)
        for handle in before:
            handle.get(timeout=60)
        assert cluster.wait_replicated()

        old = cluster.kill_master()
        killed_at = time.monotonic()
        submitter.go.set()  # jobs keep coming while the sentinels elect a new master
        new = cluster.wait_failover(old.port)
        promoted_at = time.monotonic()
        during = len(submitter.handles)
        assert wait_for(lambda: len(submitter.handles) >= during + 20, 90)
        submitter.stop.set()
        submitter.thread.join(60)

        answers = {}
        for handle in submitter.handles:
            answers[handle.id] = handle.get(timeout=120)
        served = sorted({a.served_by for a in answers.values()})
        without_master = sum(killed_at < t < promoted_at for t in submitter.started)
        print({"jobs": len(submitter.handles), "before_kill": len(before), "submitted_without_master": without_master,
               "served_by": served, "failover_s": round(promoted_at - killed_at, 2)})
        assert without_master >= 1  # the failover really happened under submissions
        assert len(answers) == len(submitter.handles) == len({h.id for h in submitter.handles})
        assert not submitter.errors, submitter.errors
        for worker in workers:
            assert worker.running, worker.log()[-3000:]
    finally:
        submitter.stop.set()
        submitter.go.set()
        for worker in workers:
            worker.stop()
        client.close()
