"""Hundreds of pause/resume cycles while jobs flow: no worker crashes (celery#2953), no
message is stranded in a worker's memory (#2564), every job is answered."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from breaker import State
from tests.support.fleet import Fleet, wait_for
from tests.workers.conftest import BROKERS, needs_broker

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CYCLES = 300
JOBS = 600


@pytest.mark.parametrize("broker", BROKERS)
def test_pause_resume_soak_accounts_for_every_job(broker: str) -> None:
    needs_broker(broker)
    fleet = Fleet(broker=broker)
    try:
        workers = [fleet.start(["echo"], "model-a", concurrency=2), fleet.start(["echo"], "model-b", concurrency=2)]
        fleet.start(["fallback"], "cpu", concurrency=2)
        breaker = fleet.breaker("echo")
        handles = []
        stop = threading.Event()

        def toggle() -> None:
            for _ in range(CYCLES):
                breaker.force_open(reason="soak")
                time.sleep(0.01)
                breaker.reset(reason="soak")
                time.sleep(0.01)
            stop.set()

        def produce() -> None:
            i = 0
            while not stop.is_set() or i < JOBS // 2:
                if i >= JOBS:
                    break
                # The model queue whatever the state: jobs taken while OPEN must reach the
                # fallback, jobs waiting in a paused queue must stay there until resumed.
                handles.append(fleet.client.submit_echo(f"soak {i}", route="model"))
                i += 1

        toggler, producer = threading.Thread(target=toggle), threading.Thread(target=produce)
        toggler.start()
        producer.start()
        toggler.join(300)
        producer.join(300)
        breaker.reset(reason="soak over")
        assert fleet.wait_state("echo", State.CLOSED)

        results = [h.get(timeout=120) for h in handles]
        served = Counter(r.served_by for r in results)
        assert len(results) == len(handles) >= JOBS // 2
        assert [r.job_id for r in results] == [h.id for h in handles]
        assert set(served) <= {"model", "fallback:neutral", "cache"}, served
        assert all(r.output["text"] in (f"soak {i}", "") for i, r in enumerate(results))

        # Nothing left anywhere: queues empty, nothing unacknowledged, every worker alive.
        assert wait_for(lambda: fleet.queued("echo") == 0 and fleet.queued("fallback") == 0, 30)
        assert wait_for(lambda: fleet.unacked() == 0, 30)
        assert all(w.running for w in fleet.workers)
        for worker in workers:
            assert "Traceback" not in worker.log(), worker.log()[-3000:]
        log = fleet.control_log()
        pauses = Counter(r["worker"] for r in log if r["action"] == "pause")
        resumes = Counter(r["worker"] for r in log if r["action"] == "resume")
        requeued = sum(w.log().count("Requeuing undeliverable message") for w in workers)
        print(f"\nsoak: {len(results)} jobs, served {dict(served)}; pauses per worker {dict(pauses)}, "
              f"resumes {dict(resumes)}; messages handed back by kombu for a cancelled queue: {requeued}")
        for worker in workers:
            assert pauses[worker.nodename] >= CYCLES // 3, (pauses, resumes)
    finally:
        fleet.close()
