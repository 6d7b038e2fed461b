"""How a breaker looks to users: the JSON that ``fusebox breakers --json`` prints and
``/breakers`` answers (one shape for both)."""

from __future__ import annotations

from typing import Any

from breaker import BreakerSnapshot
from breaker.ramp import RampStatus


def snapshot_json(snap: BreakerSnapshot, ramp: RampStatus | None = None) -> dict[str, Any]:
    """The snapshot, plus the figures derived from it: seconds until probes, window rates,
    and the slow-start ramp after a recovery (``ramp``: active, limit, in_flight, and a
    ``text`` such as "recovering: 8 of 32 slots")."""
    data = snap.model_dump(mode="json")
    data["retry_after"] = snap.retry_after
    data["window"].update(failure_rate=snap.window.failure_rate, slow_rate=snap.window.slow_rate)
    if ramp is not None:
        data["ramp"] = {**ramp.model_dump(include={"active", "limit", "in_flight", "started_ms", "ends_ms"}),
                        "text": ramp.describe()}
    return data
