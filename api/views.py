"""How a breaker looks to users: the JSON that ``fusebox breakers --json`` prints and
``/breakers`` answers (one shape for both)."""

from __future__ import annotations

from typing import Any

from breaker import BreakerSnapshot


def snapshot_json(snap: BreakerSnapshot) -> dict[str, Any]:
    """The snapshot, plus the figures derived from it: seconds until probes, window rates."""
    data = snap.model_dump(mode="json")
    data["retry_after"] = snap.retry_after
    data["window"].update(failure_rate=snap.window.failure_rate, slow_rate=snap.window.slow_rate)
    return data
