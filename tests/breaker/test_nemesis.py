"""The randomized fault harness (benchmarks/nemesis.py) with a CI budget: real caller
processes, some forking children, against a private Redis that a nemesis kills, restarts
behind or empty, freezes, pauses, fills, flushes and operates; the checker must find no
violation of docs/breaker.md's invariants. A failing run prints its seed; replay it with
``python -m benchmarks.nemesis --seed N --minutes M --keep DIR`` and keep the seed here.

The long runs (several seeds, 30 minutes and more) are run by hand:
``python -m benchmarks.nemesis --runs 6 --minutes 5 --json``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.nemesis import LOSSLESS, run

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

#: Seeds kept because they once failed: 3 (a failing phase shorter than the window's
#: reaction time was taken for a breaker that never reacts; the checker now derives the
#: reaction time from the policy, docs/breaker.md "Invariants" 7).
SEEDS = [3]


@pytest.mark.parametrize("seed", SEEDS)
def test_no_invariant_is_violated_under_random_faults(seed: int, tmp_path: Path) -> None:
    result = run(seed, 50.0, 3, str(tmp_path))
    assert result["violations"] == {}, f"seed {seed}: {result}"
    assert result["forked_children"] >= 1  # the fork path was exercised
    assert result["outcomes_made"] > 1000 and result["rejected"] > 0
    assert result["admissions_checked_fresh"] > 100
    assert sum(result["faults_applied"].values()) >= 10


def test_counts_are_exact_when_no_fault_loses_data(tmp_path: Path) -> None:
    """Without kill -9, empty restarts and DISABLED, every outcome made is counted exactly
    once (or reported lost): freezes, pauses, OOM, script flushes, silenced subscriptions
    and operator actions may not lose or double one."""
    result = run(11, 40.0, 3, str(tmp_path), LOSSLESS)
    assert result["violations"] == {}, f"seed 11: {result}"
    assert result["exact_run"]
    assert result["outcomes_counted"] == result["outcomes_made"] - result["knowingly_lost"]
