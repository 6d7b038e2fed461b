"""What every route shares, kept on ``app.state.fusebox``, and the FastAPI dependencies
that hand it out: the server's state, a known breaker or model (tokens: api.http.auth)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry

from api.alerts import AlertSender
from api.client import FuseboxClient
from breaker.state import check_name
from workers.faults import Faults
from workers.models import MODELS
from workers.settings import Settings


@dataclass
class ServerState:
    """One server's shared objects.

    Parameters:
      settings: fusebox's settings (Redis, key prefix, broker, token, webhooks).
      client: submits jobs and reads and operates breakers.
      store: a Redis connection for health, fleet and fault reads.
      faults: the fleet's fault switches.
      registry: the Prometheus registry ``/metrics`` answers from.
      alerts: sends breaker transitions to the webhooks.
    """

    settings: Settings
    client: FuseboxClient
    store: redis.Redis
    faults: Faults
    registry: CollectorRegistry
    alerts: AlertSender


def server_state(request: Request) -> ServerState:
    """The app's ServerState (a dependency)."""
    state: ServerState = request.app.state.fusebox
    return state


# The two checks below are called inside the endpoints, not declared as dependencies: a
# dependency runs before the body is validated, and a bad body must stay a 422 whatever
# the name in the path.


def check_breaker(state: ServerState, name: str) -> str:
    """``name``, if a breaker of that name exists (422 for an invalid name, 404 for an
    unknown one).

    Parameters:
      state: the server's state.
      name: from the path or the query.
    """
    try:
        check_name(name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if name not in MODELS and name not in state.client.breakers.names():
        known = sorted(set(MODELS) | set(state.client.breakers.names()))
        raise HTTPException(404, f"no breaker {name!r}; known: {', '.join(known)}")
    return name


def check_model(model: str) -> str:
    """``model``, if such a model exists (404 otherwise).

    Parameters:
      model: from the path.
    """
    if model not in MODELS:
        raise HTTPException(404, f"no model {model!r}; known: {', '.join(sorted(MODELS))}")
    return model
