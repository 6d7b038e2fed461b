"""``/health/live``, ``/health/ready`` (this pod) and ``/health/fleet`` (a worker for each
queue)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.http.state import ServerState, server_state
from breaker import STORE_ERRORS
from workers import probe

router = APIRouter()


@router.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready")
def ready(state: ServerState = Depends(server_state)) -> JSONResponse:
    """This pod: its broker and Redis answer, and its breakers decide with the shared
    store. Nothing about other pods: a missing fleet worker must not take every API
    replica out of the load balancer at once (that is /health/fleet)."""
    checks: dict[str, Any] = {}
    try:
        with state.client.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
        checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        checks["redis"] = {"ok": bool(state.store.ping())}
    except STORE_ERRORS as exc:
        checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    health = state.client.breakers.health()
    checks["breaker_store"] = {"ok": health.shared, **health.model_dump()}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/health/fleet")
def fleet_health(state: ServerState = Depends(server_state)) -> JSONResponse:
    """Fleet coverage: a live worker for each queue (drill queues not required), and
    which workers decide with their local breaker. 503 when a required queue has none."""
    try:
        view = probe.fleet(state.store, state.settings.key_prefix)
    except STORE_ERRORS as exc:
        return JSONResponse({"ok": False, "error": f"Redis unreachable: {type(exc).__name__}: {exc}"},
                            status_code=503)
    body = {"ok": view.ok, **view.model_dump(mode="json")}
    return JSONResponse(body, status_code=200 if view.ok else 503)
