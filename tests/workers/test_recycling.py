"""Out of memory and memory that creeps up, on real Celery workers (the echo model, no
Paddle): the breaker counts an out-of-memory failure, and the pool process that hit it, or
whose memory grew past FUSEBOX_MAX_MEMORY_PER_CHILD, is replaced after its job; no job is
lost on the way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet, fresh, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def recycling_fleet() -> Iterator[Fleet]:
    """One echo worker with one pool process (so every job runs in "the" process), a
    memory ceiling of 400 MB per process, and a fallback worker."""
    fleet = Fleet()
    fleet.start(["echo"], "model", FUSEBOX_MAX_MEMORY_PER_CHILD="400")
    fleet.start(["fallback"], "cpu")
    yield fleet
    fleet.close()


@pytest.fixture
def fleet(recycling_fleet: Fleet) -> Iterator[Fleet]:
    yield from fresh(recycling_fleet)


def pids(fleet: Fleet) -> list[str]:
    """The process (host:pid) that ran each model call so far, in order."""
    return [call["worker"] for call in fleet.model_calls("echo")]


def test_out_of_memory_counts_and_recycles_the_process(fleet: Fleet) -> None:
    first = fleet.client.submit_echo("before", route="model").get(timeout=20)
    assert first.served_by == "model"
    fleet.fault("echo", oom_rate=1.0)
    failures = fleet.breaker("echo").snapshot().totals.get("failure", 0)
    hit = fleet.client.submit_echo("too big for the GPU", route="model").get(timeout=20)
    assert hit.degraded and hit.served_by == "fallback:neutral"
    assert hit.reason.startswith("model out of memory: MemoryError")
    fleet.client.breakers.flush()
    assert wait_for(lambda: fleet.breaker("echo").snapshot().totals.get("failure", 0) == failures + 1, 5)

    fleet.clear_fault("echo")
    after = fleet.client.submit_echo("after", route="model").get(timeout=30)
    assert after.served_by == "model" and after.output["text"] == "after"
    ran = pids(fleet)
    assert len(ran) == 3
    assert ran[0] == ran[1], "the job before and the one that ran out of memory share a process"
    assert ran[2] != ran[1], "the process that ran out of memory was not recycled"


def test_an_ordinary_failure_does_not_recycle(fleet: Fleet) -> None:
    fleet.fault("echo", error_rate=1.0)
    assert fleet.client.submit_echo("x", route="model").get(timeout=20).reason.startswith("model failed:")
    fleet.clear_fault("echo")
    assert fleet.client.submit_echo("y", route="model").get(timeout=20).served_by == "model"
    ran = pids(fleet)
    assert len(ran) == 2 and ran[0] == ran[1]


def test_memory_creeping_up_recycles_the_process_and_loses_nothing(fleet: Fleet) -> None:
    fleet.fault("echo", grow_mb=120)
    results = [fleet.client.submit_echo(f"job {i}", route="model").get(timeout=30) for i in range(8)]
    assert [r.served_by for r in results] == ["model"] * 8
    assert [r.output["text"] for r in results] == [f"job {i}" for i in range(8)]
    ran = pids(fleet)
    # 120 MB a job against a 400 MB ceiling: a process lasts a few jobs, never all eight.
    assert len(ran) == 8 and len(set(ran)) >= 2
    assert max(ran.count(p) for p in set(ran)) <= 4
