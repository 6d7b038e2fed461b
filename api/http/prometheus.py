"""``/metrics``: Prometheus text, for the whole fleet (read from Redis)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.http.state import ServerState, server_state

router = APIRouter()


@router.get("/metrics")
def metrics(state: ServerState = Depends(server_state)) -> Response:
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
