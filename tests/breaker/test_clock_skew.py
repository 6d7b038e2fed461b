"""A process whose clock is hours off decides exactly like the others.

The child runs under libfaketime (the real thing: every clock the process reads is off)
when `faketime` is installed (.ci/run installs it), else under a Python-level shim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
WAIT = 1.5


@pytest.mark.parametrize("shift_hours", [+5, -5])
def test_skewed_process_waits_the_real_wait(redis_url: str, key_prefix: str, shift_hours: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.support.skewed_child", redis_url, key_prefix, str(WAIT)]
    if shutil.which("faketime"):
        cmd = ["faketime", "-f", f"{shift_hours:+d}h", *cmd]
    else:
        env["FUSEBOX_TEST_CLOCK_SHIFT"] = str(shift_hours * 3600)
        env["PYTHONPATH"] += os.pathsep + str(ROOT / "tests" / "support" / "skew_shim")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])

    assert abs(report["own_clock"] - time.time() - shift_hours * 3600) < 120  # the skew was real
    assert report["state_after_failures"] == "open"
    assert report["admitted_right_after_trip"] is False
    assert 0 < report["retry_after"] <= WAIT
    assert WAIT - 0.3 <= report["admitted_after"] < WAIT + 2  # neither at once nor never
    assert report["probe_state"] == "half_open"
    assert abs(report["event_at_ms"] / 1000 - time.time()) < 120  # stamped with Redis time
