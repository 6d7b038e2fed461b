"""``fusebox serve``: health, metrics, breakers, jobs, and a live breaker page.

    GET  /health/live                 the process answers
    GET  /health/ready                broker, breaker store and a live worker for each queue
    GET  /metrics                     Prometheus (the whole fleet, read from Redis)
    GET  /breakers                    every breaker's state, window and policy
    GET  /breakers/{name}
    POST /breakers/{name}/{action}    trip, reset, disable, metrics-only, force-open   [token]
    PUT  /breakers/{name}/policy      change policy fields live                         [token]
    DELETE /breakers/{name}/policy    back to the configured policy                     [token]
    GET  /events                      recent transitions
    POST /jobs                        submit a job (text, texts or image_base64)        [token]
    GET  /jobs/{id}                   its status and answer (404 for an unknown job)
    DELETE /jobs/{id}                 cancel a queued or parked job                      [token]
    GET  /                            the live breaker page

[token]: ``Authorization: Bearer <FUSEBOX_API_TOKEN>``; without a configured token those
endpoints answer 403.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.alerts import AlertSender
from api.client import CannotCancel, FuseboxClient, UnknownJob
from api.metrics import FuseboxCollector
from api.settings import ApiSettings
from api.views import snapshot_json
from breaker import BreakerPolicy, Control, StoreUnavailable
from breaker.errors import InputError
from breaker.state import check_name
from workers.control import heartbeat_key
from workers.jobs import INTERACTIVE_PRIORITY
from workers.models import FALLBACK_QUEUE, MODELS
from workers.settings import WorkerSettings

ACTIONS = {"trip": Control.TRIP, "reset": Control.RESET, "disable": Control.DISABLE,
           "metrics-only": Control.METRICS_ONLY, "force-open": Control.FORCE_OPEN}
_TASK_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class JobRequest(BaseModel):
    """``POST /jobs``: one job, exactly one input."""

    model_config = ConfigDict(extra="forbid")

    model: str
    text: str | None = None
    texts: list[str] | None = None
    image_base64: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    deadline: float | None = Field(None, description="seconds from now")
    wait: bool = False
    route: Literal["auto", "model", "fallback"] = "auto"
    bypass: str | None = None
    priority: int = Field(INTERACTIVE_PRIORITY, ge=0, le=9, description="0 (least urgent) to 9")


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


def create_app(
    worker_settings: WorkerSettings | None = None,
    api_settings: ApiSettings | None = None,
    client: FuseboxClient | None = None,
) -> FastAPI:
    ws = worker_settings or WorkerSettings.from_env()
    api = api_settings or ApiSettings.from_env()
    fb = client or FuseboxClient(ws)
    db = redis.Redis.from_url(ws.redis_url, socket_timeout=2, socket_connect_timeout=2)
    registry = CollectorRegistry()
    registry.register(FuseboxCollector(fb.breakers, db, ws))
    alerts = AlertSender(api.webhooks, db, ws.key_prefix, retries=api.alert_retries)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        remove = fb.breakers.add_listener(alerts)
        alerts.start()
        yield
        remove()
        alerts.stop()
        if client is None:
            fb.close()

    app = FastAPI(title="fusebox", version="0.1.0", lifespan=lifespan)
    app.state.client, app.state.alerts, app.state.settings = fb, alerts, ws

    def authorized(authorization: str | None = Header(default=None)) -> None:
        if not api.token:
            raise HTTPException(403, "this server has no FUSEBOX_API_TOKEN: it is read-only")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), api.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def known_breaker(name: str) -> str:
        try:
            check_name(name)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if name not in MODELS and name not in fb.breakers.names():
            raise HTTPException(404, f"no breaker {name!r}; known: {', '.join(sorted(set(MODELS) | set(fb.breakers.names())))}")
        return name

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(InputError)
    async def _bad_input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=422)

    # -- health and metrics ---------------------------------------------------------------------

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            with fb.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
            checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        health = fb.breakers.health()
        checks["breaker_store"] = {"ok": health.shared, **health.model_dump()}
        served: dict[str, list[str]] = {q: [] for q in [*MODELS, FALLBACK_QUEUE]}
        try:
            for key in db.scan_iter(heartbeat_key(ws.key_prefix, "*"), count=1000):
                raw = db.get(key)
                if raw:
                    beat = json.loads(raw)
                    for queue in beat["queues"]:
                        served.setdefault(queue, []).append(beat["hostname"])
        except (redis.RedisError, OSError) as exc:
            checks["workers"] = {"ok": False, "error": str(exc)}
        else:
            required = [m for m, spec in MODELS.items() if not spec.drill] + [FALLBACK_QUEUE]
            missing = sorted(q for q in required if not served.get(q))
            checks["workers"] = {"ok": not missing, "queues": served, "missing": missing}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- breakers ----------------------------------------------------------------------------------

    def view(name: str) -> dict[str, Any]:
        return snapshot_json(fb.breakers.get(name).snapshot())

    @app.get("/breakers")
    def breakers() -> dict[str, Any]:
        names = sorted(set(MODELS) | set(fb.breakers.names()))
        return {"breakers": [view(n) for n in names], "store": fb.breakers.health().model_dump(), "at": time.time()}

    @app.get("/breakers/{name}")
    def breaker(name: str) -> dict[str, Any]:
        return view(known_breaker(name))

    @app.post("/breakers/{name}/{action}", dependencies=[Depends(authorized)])
    def operate(name: str, action: str, reason: str = "") -> dict[str, Any]:
        known_breaker(name)
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}; actions: {', '.join(ACTIONS)}")
        event = fb.breakers.control(name, ACTIONS[action], reason or f"operator via HTTP: {action}", who="http")
        return {"event": event.model_dump(mode="json"), "breaker": view(name)}

    @app.put("/breakers/{name}/policy", dependencies=[Depends(authorized)])
    def set_policy(name: str, change: PolicyChange) -> dict[str, Any]:
        known_breaker(name)
        current = fb.breakers.get(name).policy
        try:
            policy = BreakerPolicy.model_validate({**current.model_dump(), **change.model_dump(exclude_none=True)})
        except ValidationError as exc:
            raise HTTPException(422, f"invalid policy: {exc.errors()[0]['msg']}") from None
        fb.breakers.set_policy(name, policy, who="http")
        return view(name)

    @app.delete("/breakers/{name}/policy", dependencies=[Depends(authorized)])
    def clear_policy(name: str) -> dict[str, Any]:
        known_breaker(name)
        fb.breakers.clear_policy(name, who="http")
        return view(name)

    @app.get("/events")
    def events(count: int = 20, breaker: str | None = None) -> dict[str, Any]:
        if breaker is not None:
            known_breaker(breaker)
        history = fb.breakers.history(breaker, max(1, min(count, 500)))
        return {"events": [e.model_dump(mode="json") for e in reversed(history)]}

    # -- jobs -----------------------------------------------------------------------------------------

    @app.post("/jobs", status_code=202, dependencies=[Depends(authorized)])
    def submit(request: JobRequest) -> dict[str, Any]:
        image = None
        if request.image_base64 is not None:
            try:
                image = base64.b64decode(request.image_base64, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(422, "image_base64 is not valid base64") from None
        handle = fb.submit(request.model, image=image, text=request.text, texts=request.texts, options=request.options,
                           deadline=request.deadline, wait=request.wait, route=request.route, bypass=request.bypass,
                           priority=request.priority)
        return {"job_id": handle.id, "model": handle.model, "routed_to": handle.routed_to, "status_url": f"/jobs/{handle.id}"}

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        if not _TASK_ID.match(job_id):
            raise HTTPException(422, "not a job id")
        result = fb.app.AsyncResult(job_id)
        try:
            state = fb.status(job_id)
        except UnknownJob as exc:
            raise HTTPException(404, str(exc)) from None
        body: dict[str, Any] = {"job_id": job_id, "status": state}
        if state == "SUCCESS":
            body["result"] = result.result
        elif state == "FAILURE":
            exc = result.result
            body["error"] = {"type": type(exc).__name__, "message": str(exc)}
        elif state == "PARKED":
            body["parked"] = result.info
        return body

    @app.delete("/jobs/{job_id}", dependencies=[Depends(authorized)])
    def cancel_job(job_id: str) -> dict[str, Any]:
        if not _TASK_ID.match(job_id):
            raise HTTPException(422, "not a job id")
        try:
            outcome = fb.cancel(job_id, reason="cancelled via HTTP")
        except UnknownJob as exc:
            raise HTTPException(404, str(exc)) from None
        except CannotCancel as exc:
            raise HTTPException(409, str(exc)) from None
        return {"job_id": job_id, "status": "CANCELLED", "outcome": outcome}

    # -- the page -------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("api").joinpath("static/breakers.html").read_text(encoding="utf-8")

    return app
