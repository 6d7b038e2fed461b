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
    POST /chaos/{model}               turn a fault on, for ``for_seconds`` (default 600)   [operator]
    DELETE /chaos/{model}             turn it off                                          [operator]
    GET  /workers                     every model worker's devices: healthy, ejected, probing
    POST /workers/{name}/{action}     eject, restore a worker's devices (``?model=``)      [operator]
    POST /jobs                        submit a job (text, texts or image_base64)        [token]
    GET  /jobs/{id}                   its status and answer (404 for an unknown job)   [token]*
    DELETE /jobs/{id}                 cancel a queued or parked job                      [token]
    GET  /                            the live breaker page

[token]: ``Authorization: Bearer <FUSEBOX_API_TOKEN>`` (or a named ``FUSEBOX_API_TOKENS``
one); without a configured token those endpoints answer 403. [token]*: unless
``FUSEBOX_API_OPEN_READS``. [operator]: ``FUSEBOX_API_CHAOS_TOKEN`` only (api.http.auth).
Tokens and the body's size are checked before any body is read (api.http.guard).

One module per group of routes (an ``APIRouter`` each); what they share is a
:class:`~api.http.state.ServerState` on ``app.state.fusebox``, handed out by FastAPI
dependencies (api.http.state).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.alerts import AlertSender
from api.client import FuseboxClient
from api.device_alerts import DeviceAlertSender, DeviceEventFeed
from api.http import breakers, chaos, health, jobs, page, prometheus, workers
from api.http.errors import add_error_handlers
from api.http.guard import RequestGuard
from api.http.state import ServerState
from api.metrics import FuseboxCollector
from breaker import STORE_ERRORS, StoreUnavailable
from breaker.connection import redis_client
from workers.faults import Faults
from workers.settings import Settings


def create_app(settings: Settings | None = None, client: FuseboxClient | None = None) -> FastAPI:
    """The HTTP server's app.

    Parameters:
      settings: where Redis and the broker are, the token, the webhooks (this process's
        ``FUSEBOX_*`` environment by default).
      client: a client to use (and leave open); one made here, and closed on shutdown,
        by default.
    """
    settings = settings or Settings.from_env()
    fusebox = client or FuseboxClient(settings)
    store = redis_client(settings.redis_url, 2, fail_fast=False)
    registry = CollectorRegistry()
    registry.register(FuseboxCollector(fusebox.breakers, store, settings))
    alerts = AlertSender(settings.alert_webhooks, store, settings.key_prefix, retries=settings.alert_retries,
                         lease=settings.alert_lease)
    state = ServerState(settings=settings, client=fusebox, store=store,
                        faults=Faults(store, settings.key_prefix), registry=registry, alerts=alerts)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        remove = fusebox.breakers.add_listener(alerts)
        alerts.start()
        device_alerts = (DeviceEventFeed(DeviceAlertSender(settings.alert_webhooks, store, settings.key_prefix,
                                                           retries=settings.alert_retries, lease=settings.alert_lease),
                                         store, settings.key_prefix, settings.alert_replay).start()
                         if settings.alert_webhooks else None)
        if settings.alert_webhooks:
            try:  # what a sender that died left undelivered (marks make the rest a no-op)
                alerts.replay(fusebox.breakers.history(None, 1000), settings.alert_replay)
            except (*STORE_ERRORS, StoreUnavailable):
                pass
        yield
        remove()
        alerts.stop()
        if device_alerts is not None:
            device_alerts.stop()
        if client is None:
            fusebox.close()

    app = FastAPI(title="fusebox", version="0.1.0", lifespan=lifespan)
    app.state.fusebox = state
    app.add_middleware(RequestGuard, settings=settings)  # token and body size, before any body is read
    add_error_handlers(app)
    for router in (health.router, prometheus.router, breakers.router, chaos.router, jobs.router, workers.router,
                   page.router):
        app.include_router(router)
    return app
