"""How a breaker looks to users: the JSON that ``fusebox breakers --json`` prints and
``/breakers`` answers (one shape for both)."""

from __future__ import annotations

from typing import Any

from breaker import BreakerSnapshot
from breaker.ramp import RampStatus


def snapshot_json(snap: BreakerSnapshot, ramp: RampStatus | None = None) -> dict[str, Any]:
    """The snapshot, plus the figures derived from it: seconds until probes, window rates
    (null below ``minimum_calls``, with ``judgement``: "not judged: 3 of 5 calls"),
    and the slow-start ramp after a recovery (``ramp``: active, limit, in_flight, and a
    ``text`` such as "recovering: 8 of 32 slots")."""
    data = snap.model_dump(mode="json")
    data["retry_after"] = snap.retry_after
    w = snap.window
    # Rates below minimum_calls are not judged: null (resilience4j's -1), and said in words.
    data["window"].update(failure_rate=w.judged_failure_rate, slow_rate=w.judged_slow_rate, judged=w.judged,
                          judgement=w.judgement)
    if ramp is not None:
        data["ramp"] = {**ramp.model_dump(include={"active", "limit", "in_flight", "started_ms", "ends_ms"}),
                        "text": ramp.describe()}
    return data


def fault_json(model: str, fallback: bool, spec: Any, expires_in: float | None) -> dict[str, Any]:
    """One fault switch as ``fusebox chaos --json`` and ``/chaos/{model}`` answer it.

    Parameters:
      model: the model.
      fallback: whether the switch targets the model's fallback path.
      spec: its FaultSpec (inactive when off).
      expires_in: seconds until it turns itself off; None when off.
    """
    active = bool(spec.active)
    return {
        "model": model,
        "target": f"fallback.{model}" if fallback else model,
        "active": active,
        "fault": spec.model_dump(exclude_defaults=True) if active else None,
        "expires_in": round(expires_in, 3) if active and expires_in is not None else None,
    }
