"""``fusebox serve``: health, metrics, breakers, jobs, and a live breaker page.

    GET  /health/live                 the process answers
    GET  /health/ready                this pod: broker and Redis answer, breaker store shared
    GET  /health/fleet                a live worker for each queue; workers on a local breaker
    GET  /metrics                     Prometheus (the whole fleet, read from Redis)
    GET  /breakers                    every breaker's state, window and policy
    GET  /breakers/{name}
    POST /breakers/{name}/{action}    trip, reset, disable, metrics-only, force-open   [token]
    PUT  /breakers/{name}/policy      change policy fields live                         [token]
    DELETE /breakers/{name}/policy    back to the configured policy                     [token]
    GET  /events                      recent transitions, newest first
    GET  /chaos/{model}               its fault switch, if any
    POST /chaos/{model}               turn a fault on, for ``for_seconds`` (default 600)   [token]
    DELETE /chaos/{model}             turn it off                                          [token]
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
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.alerts import AlertSender
from api.client import CannotCancel, FuseboxClient, UnknownJob
from api.metrics import FuseboxCollector
from api.settings import ApiSettings
from api.views import fault_json, snapshot_json
from breaker import STORE_ERRORS, BreakerPolicy, Control, StoreUnavailable
from breaker.connection import redis_client
from breaker.errors import InputError
from breaker.state import check_name
from workers import probe
from workers.faults import DEFAULT_FAULT_TTL, MAX_FAULT_TTL, Faults, FaultSpec
from workers.jobs import INTERACTIVE_PRIORITY
from workers.models import MODELS
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


class ChaosRequest(FaultSpec):
    """``POST /chaos/{model}``: a fault (FaultSpec's fields), how long it lasts, and whether
    it targets the model's fallback path."""

    for_seconds: float = Field(DEFAULT_FAULT_TTL, gt=0, le=MAX_FAULT_TTL, allow_inf_nan=False)
    fallback: bool = False


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


def _safe_text(value: Any) -> str:
    """``value`` as text that encodes as UTF-8: lone surrogates become ``\\udcff``."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error, reduced to what always serialises: where, what, which kind
    (not the offending input, which may be huge, NaN, or not encodable)."""
    return {
        "loc": [p if isinstance(p, int) else _safe_text(p) for p in error.get("loc", ())],
        "msg": _safe_text(error.get("msg", "")),
        "type": _safe_text(error.get("type", "")),
    }


def create_app(
    worker_settings: WorkerSettings | None = None,
    api_settings: ApiSettings | None = None,
    client: FuseboxClient | None = None,
) -> FastAPI:
    ws = worker_settings or WorkerSettings.from_env()
    api = api_settings or ApiSettings.from_env()
    fb = client or FuseboxClient(ws)
    db = redis_client(ws.redis_url, 2, fail_fast=False)
    registry = CollectorRegistry()
    registry.register(FuseboxCollector(fb.breakers, db, ws))
    alerts = AlertSender(api.webhooks, db, ws.key_prefix, retries=api.alert_retries, lease=api.alert_lease)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        remove = fb.breakers.add_listener(alerts)
        alerts.start()
        if api.webhooks:
            try:  # what a sender that died left undelivered (marks make the rest a no-op)
                alerts.replay(fb.breakers.history(None, 1000), api.alert_replay)
            except (*STORE_ERRORS, StoreUnavailable):
                pass
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

    @app.exception_handler(redis.RedisError)
    async def _redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"Redis unreachable: {type(exc).__name__}: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the offending input and field names as they came: a
        # lone surrogate in a field name ("\udcff") cannot be encoded as UTF-8 and a NaN
        # cannot be written as JSON, so a caller's bad request became a 500.
        return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(InputError)
    async def _bad_input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=422)

    # -- health and metrics ---------------------------------------------------------------------

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        """This pod: its broker and Redis answer, and its breakers decide with the shared
        store. Nothing about other pods: a missing fleet worker must not take every API
        replica out of the load balancer at once (that is /health/fleet)."""
        checks: dict[str, Any] = {}
        try:
            with fb.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
            checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            checks["redis"] = {"ok": bool(db.ping())}
        except STORE_ERRORS as exc:
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        health = fb.breakers.health()
        checks["breaker_store"] = {"ok": health.shared, **health.model_dump()}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/health/fleet")
    def fleet_health() -> JSONResponse:
        """Fleet coverage: a live worker for each queue (drill queues not required), and
        which workers decide with their local breaker. 503 when a required queue has none."""
        try:
            view = probe.fleet(db, ws.key_prefix)
        except STORE_ERRORS as exc:
            return JSONResponse({"ok": False, "error": f"Redis unreachable: {type(exc).__name__}: {exc}"},
                                status_code=503)
        body = {"ok": view.ok, **view.model_dump(mode="json")}
        return JSONResponse(body, status_code=200 if view.ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- breakers ----------------------------------------------------------------------------------

    def view(name: str) -> dict[str, Any]:
        return snapshot_json(fb.breakers.get(name).snapshot(), fb.breakers.ramp(name))

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

    # -- fault injection --------------------------------------------------------------------------

    faults = Faults(db, ws.key_prefix)

    def known_model(model: str) -> str:
        if model not in MODELS:
            raise HTTPException(404, f"no model {model!r}; known: {', '.join(sorted(MODELS))}")
        return model

    def fault_view(model: str, fallback: bool) -> dict[str, Any]:
        target = f"fallback.{model}" if fallback else model
        return fault_json(model, fallback, faults.get(target), faults.remaining(target))

    @app.get("/chaos/{model}")
    def chaos_status(model: str, fallback: bool = False) -> dict[str, Any]:
        return fault_view(known_model(model), fallback)

    @app.post("/chaos/{model}", dependencies=[Depends(authorized)])
    def chaos_on(model: str, request: ChaosRequest) -> dict[str, Any]:
        known_model(model)
        spec = FaultSpec.model_validate(request.model_dump(exclude={"for_seconds", "fallback"}))
        if not spec.active:
            raise HTTPException(422, "no fault given: error_rate, oom_rate, latency, hang or stall")
        faults.set(f"fallback.{model}" if request.fallback else model, spec, request.for_seconds)
        return fault_view(model, request.fallback)

    @app.delete("/chaos/{model}", dependencies=[Depends(authorized)])
    def chaos_off(model: str, fallback: bool = False) -> dict[str, Any]:
        known_model(model)
        faults.clear(f"fallback.{model}" if fallback else model)
        return fault_view(model, fallback)

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
