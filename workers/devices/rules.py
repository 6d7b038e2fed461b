"""When a device is ejected, for how long, and how many of a model's devices may be.

The rules (after Envoy's outlier detection; defaults and reasons in docs/devices.md):

- a *device fault*: an error whose message says the device itself is broken (a CUDA error,
  an illegal memory access, ECC or Xid errors, a lost device) ejects at once: after one,
  every later call on that CUDA context fails too. Out of memory is not one: it stays a
  model failure and a recycled process (workers/gpu.py);
- ``consecutive_failures`` failures (or timeouts) in a row;
- an *outlier*: over its last ``window`` calls, a device's success rate is more than
  ``outlier_gap`` below that of its peers (the model's other live devices) over theirs,
  each with at least ``outlier_min_calls`` calls.

The n-th ejection lasts ``base × n`` seconds, at most ``max_time``; at most
``max_share`` of a model's live devices are ejected at once, and one always may be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from workers.gpu import is_out_of_memory
from workers.settings import Settings

#: What Paddle, CUDA and the driver say when the device (not the model, not the input) broke.
DEVICE_FAULT = re.compile(
    r"cuda error|cudaerror|cuda_error_|illegal memory access|illegal address|\becc\b|\bxid\b|"
    r"device[- ]side assert|lost device|device (?:is )?lost|fallen off the bus|cublas_status_execution_failed|"
    r"cudnn_status_execution_failed|launch failure",
    re.IGNORECASE,
)


def is_device_fault(exc: BaseException) -> bool:
    """Whether an exception says the device itself is broken (out of memory is not)."""
    return not is_out_of_memory(exc) and bool(DEVICE_FAULT.search(f"{type(exc).__name__} {exc}"))


def success_rate(outcomes: Sequence[bool]) -> float:
    return sum(outcomes) / len(outcomes) if outcomes else 1.0


@dataclass(frozen=True)
class EjectionRules:
    """The settings of the rules above (``FUSEBOX_DEVICE_*``)."""

    enabled: bool = True
    consecutive_failures: int = 5
    window: int = 20
    outlier_min_calls: int = 10
    outlier_gap: float = 0.4
    base_time: float = 30.0
    max_time: float = 300.0
    max_share: float = 0.5
    live_window: float = 30.0
    retries: int = 2

    @classmethod
    def from_settings(cls, s: Settings) -> EjectionRules:
        return cls(enabled=s.device_ejection, consecutive_failures=s.device_consecutive_failures,
                   window=s.device_window, outlier_min_calls=s.device_outlier_min_calls,
                   outlier_gap=s.device_outlier_gap, base_time=s.device_ejection_time,
                   max_time=s.device_max_ejection_time, max_share=s.device_max_ejected_share,
                   live_window=s.device_live_window, retries=s.device_retries)

    def ejection_time(self, ejections: int) -> float:
        """Seconds the ``ejections``-th ejection lasts."""
        return min(self.base_time * max(1, ejections), self.max_time)

    def cap(self, live: int) -> int:
        """Most devices of a model with ``live`` devices that may be ejected at once."""
        return max(1, math.floor(live * self.max_share))

    def is_outlier(self, own: Sequence[bool], peers: Sequence[Sequence[bool]]) -> bool:
        """``own``: the device's recent outcomes; ``peers``: each other live device's."""
        counted = [p for p in peers if len(p) >= self.outlier_min_calls]
        if len(own) < self.outlier_min_calls or not counted:
            return False
        fleet = success_rate([o for p in counted for o in p])
        return success_rate(own) < fleet - self.outlier_gap

    def reason(self, fault: bool, streak: int, own: Sequence[bool], peers: Sequence[Sequence[bool]]) -> str | None:
        """Why a device that just failed a call is to be ejected, or None."""
        if fault:
            return "device fault"
        if streak >= self.consecutive_failures:
            return "consecutive failures"
        if self.is_outlier(own, peers):
            return "success-rate outlier"
        return None
