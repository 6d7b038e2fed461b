"""``/workers``: every model worker's devices (healthy, ejected, probing), and an operator's
eject and restore."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException

from api.devices import device_json, device_store, operate, workers_json
from api.http.auth import operator
from api.http.state import ServerState, check_model, server_state

router = APIRouter()


@router.get("/workers")
def workers(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    return workers_json(device_store(state.store, state.settings))


@router.post("/workers/{name}/{action}", dependencies=[Depends(operator)])
def operate_worker(name: str, action: Literal["eject", "restore"], model: str | None = None,
                   state: ServerState = Depends(server_state)) -> dict[str, Any]:
    if model is not None:
        check_model(model)
    try:
        rows = operate(device_store(state.store, state.settings), name, action, model)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"devices": [device_json(r) for r in rows]}
