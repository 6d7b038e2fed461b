"""``/chaos/{model}``: a model's fault switch, read, turned on for a while, turned off."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from api.http.auth import operator
from api.http.state import ServerState, check_model, server_state
from api.views import fault_json
from workers.faults import DEFAULT_FAULT_TTL, MAX_FAULT_TTL, FaultSpec

router = APIRouter()


class ChaosRequest(FaultSpec):
    """``POST /chaos/{model}``: a fault (FaultSpec's fields), how long it lasts, and whether
    it targets the model's fallback path."""

    for_seconds: float = Field(DEFAULT_FAULT_TTL, gt=0, le=MAX_FAULT_TTL, allow_inf_nan=False)
    fallback: bool = False
    worker: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@\-]{1,200}$",
                               description="one worker only (its node name)")


def _target(model: str, fallback: bool) -> str:
    return f"fallback.{model}" if fallback else model


def _fault_view(state: ServerState, model: str, fallback: bool, worker: str | None = None) -> dict[str, Any]:
    target = _target(model, fallback)
    view = fault_json(model, fallback, state.faults.get(target, worker), state.faults.remaining(target, worker))
    if worker:
        view["worker"] = worker
    return view


@router.get("/chaos/{model}")
def chaos_status(model: str, fallback: bool = False, worker: str | None = None,
                 state: ServerState = Depends(server_state)) -> dict[str, Any]:
    return _fault_view(state, check_model(model), fallback, worker)


@router.post("/chaos/{model}", dependencies=[Depends(operator)])
def chaos_on(model: str, request: ChaosRequest, state: ServerState = Depends(server_state)) -> dict[str, Any]:
    check_model(model)
    spec = FaultSpec.model_validate(request.model_dump(exclude={"for_seconds", "fallback", "worker"}))
    if not spec.active:
        raise HTTPException(422, "no fault given: error_rate, oom_rate, latency, hang, stall or device_fault")
    state.faults.set(_target(model, request.fallback), spec, request.for_seconds, worker=request.worker)
    return _fault_view(state, model, request.fallback, request.worker)


@router.delete("/chaos/{model}", dependencies=[Depends(operator)])
def chaos_off(model: str, fallback: bool = False, worker: str | None = None,
              state: ServerState = Depends(server_state)) -> dict[str, Any]:
    check_model(model)
    state.faults.clear(_target(model, fallback), worker)
    return _fault_view(state, model, fallback, worker)
