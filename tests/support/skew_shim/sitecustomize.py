"""Fallback for machines without libfaketime: shifts this process's wall and monotonic
clocks by FUSEBOX_TEST_CLOCK_SHIFT seconds at the Python level."""

import os
import time

_shift = float(os.environ.get("FUSEBOX_TEST_CLOCK_SHIFT", "0"))
if _shift:
    _time, _time_ns, _mono = time.time, time.time_ns, time.monotonic
    time.time = lambda: _time() + _shift
    time.time_ns = lambda: _time_ns() + int(_shift * 1e9)
    time.monotonic = lambda: _mono() + _shift
