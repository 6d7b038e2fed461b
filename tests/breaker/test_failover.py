"""Redis Sentinel failover under load: one master, one replica, three sentinels on
loopback; guarded callers in processes of their own on the ``sentinel://`` URL; kill -9 of
the master.

What a user needs, asserted here:
- guarded calls never raise anything but CallNotPermitted (and the model's own errors);
- decisions go on while the store fails over (each process decides locally) and are the
  fleet's again afterwards, on the promoted replica (a trip made there reaches every
  process; a model failing after the failover trips the shared breaker);
- a breaker OPEN before the failover is OPEN after it, with the same epoch: the trip was
  written to the master and acknowledged by the replica before the kill (Redis replicates
  asynchronously: a write the master accepted and had not yet sent to the replica when it
  died is lost; see docs/breaker.md, "Redis Sentinel").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from breaker import BreakerPolicy, State
from breaker.connection import MASTER_RECHECK_INTERVAL
from tests.support.failover import call_forever, read_score
from tests.support.processes import SPAWN, make_breakers
from tests.support.sentinel import SentinelCluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POLICY = BreakerPolicy(minimum_calls=10, failure_rate_threshold=0.5, window=10, wait_in_open=600,
                       max_wait_in_open=600, call_timeout=1, max_wait_in_half_open=5)
NAMES = ["tripped", "flaky", "late"]
CALLERS = 2


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


def count(score: dict[str, Any], name: str | None = None, mode: str | None = None, result: str | None = None) -> int:
    """Calls in a caller's score matching breaker ``name``, ``mode`` (shared/local) and
    ``result`` (ok, rejected, failed); None matches any."""
    total = 0
    for key, n in score.get("calls", {}).items():
        b, m, r = key.split("|", 2)
        if (name is None or b == name) and (mode is None or m == mode) and (result is None or r == result):
            total += n
    return total


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(password="master secret", sentinel_password="sentinel secret") as c:
        yield c


@pytest.mark.parametrize("how", ["kill", "coordinated"])
def test_breakers_ride_out_a_sentinel_failover(cluster: SentinelCluster, tmp_path: Path, how: str) -> None:
    """``kill``: kill -9 of the master, the replica is promoted after down-after-milliseconds.
    ``coordinated``: ``SENTINEL FAILOVER``, the master is demoted to a replica while the
    callers are connected to it (READONLY for whoever still writes there)."""
    prefix = "failover"
    operator = make_breakers(cluster.url, prefix, POLICY)
    before = operator.get("tripped").trip(reason="tripped before the failover")
    epoch_before = operator.get("tripped").snapshot().epoch
    # The trip is on the replica too (what `WAIT 1` gives a writer): only then can it survive.
    assert cluster.wait_replicated()

    fail, stop = tmp_path / "fail", tmp_path / "stop"
    scores = [str(tmp_path / f"caller-{i}.json") for i in range(CALLERS)]
    procs = [SPAWN.Process(target=call_forever, args=(cluster.url, prefix, POLICY.model_dump_json(), NAMES, path,
                                                      str(fail), str(stop)))
             for path in scores]
    for p in procs:
        p.start()
    try:
        every = lambda pred: all(pred(read_score(path)) for path in scores)  # noqa: E731
        assert wait_for(lambda: every(lambda s: count(s, "late", "shared", "ok") >= 20), 60), [read_score(p) for p in scores]

        old = cluster.kill_master() if how == "kill" else cluster.failover()
        new = cluster.wait_failover(old.port)
        assert new.port != old.port
        if how == "kill":
            # Every process noticed, decided locally meanwhile, and is back on the shared store.
            assert wait_for(lambda: every(lambda s: s.get("store", {}).get("regained", 0) >= 1
                                          and not s["degraded"])), [read_score(p) for p in scores]
            for path in scores:
                s = read_score(path)
                assert s["store"].get("lost", 0) >= 1, s
                assert count(s, mode="local") > 0, f"no decision while the store failed over: {s}"
        else:
            assert wait_for(lambda: every(lambda s: not s["degraded"]))
            # The demoted master accepts writes until the sentinels reconfigure it (up to
            # 10 s); fusebox's clients ask the sentinels again within MASTER_RECHECK_INTERVAL
            # and move: what they wrote there before is lost (docs/breaker.md).
            time.sleep(2 * MASTER_RECHECK_INTERVAL)
        mark = [read_score(p) for p in scores]

        # Shared decisions on the promoted replica: an operator's trip reaches every process...
        operator.get("late").trip(reason="tripped after the failover")
        assert wait_for(lambda: all(count(read_score(p), "late", "shared", "rejected")
                                    > count(m, "late", "shared", "rejected") + 20 for p, m in zip(scores, mark)))
        # ... and a model failing now trips the shared breaker, for every process.
        fail.touch()
        assert wait_for(lambda: operator.get("flaky").snapshot().state == State.OPEN)
        mark = [read_score(p) for p in scores]
        assert wait_for(lambda: all(count(read_score(p), "flaky", "shared", "rejected")
                                    > count(m, "flaky", "shared", "rejected") + 20 for p, m in zip(scores, mark)))
    finally:
        stop.touch()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        operator.close()

    final = [read_score(p) for p in scores]
    print(json.dumps({"failover": {"how": how, "old_master": old.port, "new_master": new.port},
                      "callers": [{"local": count(s, mode="local"), "shared": count(s, mode="shared"),
                                   "store_events": s["store"]} for s in final]}))
    for s in final:
        assert s.get("done"), s
        raised = {k: n for k, n in s["calls"].items() if "|raised " in k}
        assert not raised, f"a guarded call raised something else than CallNotPermitted: {raised}"
        # The breaker OPEN before the failover never let a call through, in either mode.
        assert count(s, "tripped", result="ok") == 0 and count(s, "tripped", result="failed") == 0, s
        if how == "kill":
            assert count(s, "tripped", "local", "rejected") > 0, s
        # One failover is one loss of the store at most, not a flapping between the shared
        # and the local breaker (a demoted master answering READONLY must not cause that).
        assert s["store"].get("lost", 0) <= 1, s
    after = make_breakers(cluster.url, prefix, POLICY)
    try:
        snap = after.get("tripped").snapshot()
        assert not snap.local
        assert (snap.state, snap.epoch) == (State.OPEN, epoch_before), snap
        assert before.kind == "transition"
        assert after.get("flaky").snapshot().totals.get("to_open", 0) == 1
    finally:
        after.close()
    assert os.path.exists(stop)
