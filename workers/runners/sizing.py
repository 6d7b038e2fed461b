"""How much time a model call gets for its input's size.

A 6000x6000 page is the caller's load, not the model's sickness: judged by the timeouts of
a one-megapixel page it would time out, count as a model failure, and a burst of such
pages would trip OCR for everyone. The policy's ``reference_megapixels`` says up to what
size ``call_timeout`` and ``slow_call_duration`` apply as they are; a bigger input gets
both scaled by its size (:meth:`BreakerPolicy.size_factor`). The breaker is told the call's
duration divided by that factor ("seconds per reference-size input"), so its slow-call
rule needs no other change and a stored policy without the field behaves as before.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from breaker import BreakerPolicy

#: Share of the hard limits a scaled timeout may reach: the call must time out (and be
#: recorded) before the pool kills the process or an overdue probe re-opens the breaker.
HEADROOM = 0.9


def megapixels(model_input: Any) -> float | None:
    """An image input's size in megapixels; None for other inputs (texts)."""
    size = getattr(model_input, "size", None)
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return size[0] * size[1] / 1e6
    return None


class CallAllowance(BaseModel):
    """One call's limits.

    Parameters:
      factor: how many times the policy's durations this input is allowed (>= 1).
      timeout: seconds the call may run before it is interrupted and counted a timeout.
    """

    model_config = ConfigDict(frozen=True)

    factor: float = 1.0
    timeout: float

    def recorded(self, elapsed: float) -> float:
        """The duration the breaker is told: per reference-size input."""
        return elapsed / self.factor


def allowance(policy: BreakerPolicy, model_input: Any, hard_time_limit: float) -> CallAllowance:
    """The call's limits for ``model_input`` under ``policy``.

    Parameters:
      policy: the breaker's current policy.
      model_input: the validated input (a PIL image for OCR).
      hard_time_limit: seconds after which the pool kills a stuck process; a scaled
        timeout stays below it, and below ``max_wait_in_half_open`` (a probe must report
        before an overdue probe re-opens the breaker), but never below ``call_timeout`` itself.
    """
    factor = policy.size_factor(megapixels(model_input))
    ceiling = max(policy.call_timeout, HEADROOM * min(hard_time_limit, policy.max_wait_in_half_open))
    return CallAllowance(factor=factor, timeout=min(policy.call_timeout * factor, ceiling))
