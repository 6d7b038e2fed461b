"""``/breakers`` (read and operate) and ``/events`` (recent transitions)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, ValidationError

from api.http.auth import api_caller
from api.http.state import ServerState, check_breaker, server_state
from api.views import snapshot_json
from breaker import BreakerPolicy, Control
from breaker.events import MAX_REASON
from workers.inputs import first_error
from workers.models import MODELS

ACTIONS = {"trip": Control.TRIP, "reset": Control.RESET, "disable": Control.DISABLE,
           "metrics-only": Control.METRICS_ONLY, "force-open": Control.FORCE_OPEN}

router = APIRouter()


class PolicyChange(BaseModel):
    """``PUT /breakers/{name}/policy``: the fields to change; the rest stay."""

    model_config = ConfigDict(extra="forbid")

    minimum_calls: int | None = None
    failure_rate_threshold: float | None = None
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float | None = None
    window: int | None = None
    wait_in_open: float | None = None
    wait_in_open_multiplier: float | None = None
    max_wait_in_open: float | None = None
    permitted_calls_in_half_open: int | None = None
    max_wait_in_half_open: float | None = None
    call_timeout: float | None = None
    bypass_callers: list[str] | None = None
    consecutive_failures_threshold: int | None = None  # 0 turns the trigger off


def _view(state: ServerState, name: str) -> dict[str, Any]:
    return snapshot_json(state.client.breakers.get(name).snapshot(), state.client.breakers.ramp(name))


@router.get("/breakers")
def breakers(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    names = sorted(set(MODELS) | set(state.client.breakers.names()))
    return {"breakers": [_view(state, n) for n in names], "store": state.client.breakers.health().model_dump(),
            "at": time.time()}


@router.get("/breakers/{name}")
def breaker(name: str, state: ServerState = Depends(server_state)) -> dict[str, Any]:
    return _view(state, check_breaker(state, name))


@router.post("/breakers/{name}/{action}")
def operate(name: str, action: str, reason: str = Query("", max_length=MAX_REASON),
            state: ServerState = Depends(server_state), who: str = Depends(api_caller)) -> dict[str, Any]:
    check_breaker(state, name)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}; actions: {', '.join(ACTIONS)}")
    event = state.client.breakers.control(name, ACTIONS[action], reason or f"operator via HTTP: {action}", who=who)
    return {"event": event.model_dump(mode="json"), "breaker": _view(state, name)}


@router.put("/breakers/{name}/policy")
def set_policy(name: str, change: PolicyChange, state: ServerState = Depends(server_state),
               who: str = Depends(api_caller)) -> dict[str, Any]:
    check_breaker(state, name)
    current = state.client.breakers.get(name).policy
    try:
        changes = change.model_dump(exclude_none=True)
        if changes.get("consecutive_failures_threshold") == 0:
            changes["consecutive_failures_threshold"] = None
        policy = BreakerPolicy.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise HTTPException(422, f"invalid policy: {first_error(exc)}") from None
    state.client.breakers.set_policy(name, policy, who=who)
    return _view(state, name)


@router.delete("/breakers/{name}/policy")
def clear_policy(name: str, state: ServerState = Depends(server_state), who: str = Depends(api_caller)) -> dict[str, Any]:
    check_breaker(state, name)
    state.client.breakers.clear_policy(name, who=who)
    return _view(state, name)


@router.get("/events")
def events(count: int = 20, breaker: str | None = None, state: ServerState = Depends(server_state)) -> dict[str, Any]:
    if breaker is not None:
        check_breaker(state, breaker)
    history = state.client.breakers.history(breaker, max(1, min(count, 500)))
    return {"events": [e.model_dump(mode="json") for e in reversed(history)]}
