"""Who may do what over HTTP: bearer tokens, the caller each one names, and which routes
need which token.

Three kinds of route (decided by :func:`required`, the one place that says it):

- ``public``: health, metrics, breakers, events, fault switches (read), the live page;
- ``api``: everything that changes something, and the jobs' answers (``GET /jobs/{id}``:
  OCR results of ID cards are nobody's business) unless ``FUSEBOX_API_OPEN_READS``;
  any token of ``FUSEBOX_API_TOKEN`` / ``FUSEBOX_API_TOKENS``;
- ``operator``: fault injection (``POST``/``DELETE /chaos/...``) and ejecting or restoring
  devices (``POST /workers/...``), only with
  ``FUSEBOX_API_CHAOS_TOKEN``: the token that submits jobs cannot take the fleet down.

The check runs twice: in :class:`api.http.guard.RequestGuard`, before any byte of the
body is read, and as a FastAPI dependency on each route (the caller's name for the audit).
"""

from __future__ import annotations

import secrets
from typing import Literal

from fastapi import HTTPException, Request

from workers.settings import Settings

Need = Literal["public", "api", "operator"]
_READS = ("GET", "HEAD", "OPTIONS")


def required(method: str, path: str, settings: Settings) -> Need:
    """What a request needs, from its method and path alone."""
    if path.startswith(("/chaos/", "/workers/")):
        # Fault injection, and ejecting devices (uncapped: an operator's), can take a
        # model's whole fleet out: not with the token that submits jobs.
        return "public" if method in _READS else "operator"
    if method not in _READS:
        return "api"
    if path.startswith("/jobs/") and not settings.api_open_reads:
        return "api"
    return "public"


def _match(given: str, tokens: dict[str, str]) -> str | None:
    """The caller of ``given`` among ``tokens`` (token -> caller), compared in constant time."""
    found = None
    for token, caller in tokens.items():
        if secrets.compare_digest(given.encode(), token.encode()):
            found = caller
    return found


def check(need: Need, authorization: str | None, settings: Settings) -> tuple[int, str] | str:
    """The caller's name (``http``, ``http:NAME``, ``operator``; ``anonymous`` for public
    routes), or ``(status, why)`` when the request is refused."""
    if need == "public":
        return "anonymous"
    tokens = settings.callers() if need == "api" else (
        {settings.api_chaos_token: "operator"} if settings.api_chaos_token else {})
    if not tokens:
        variable = "FUSEBOX_API_TOKEN" if need == "api" else "FUSEBOX_API_CHAOS_TOKEN"
        return 403, f"this server has no {variable}: the route is closed"
    scheme, _, given = (authorization or "").partition(" ")
    caller = _match(given.strip(), tokens) if scheme.lower() == "bearer" else None
    if caller is None:
        return 401, "missing or wrong bearer token" + (" (fault injection takes the operator's token)"
                                                       if need == "operator" else "")
    return caller


def _dependency(need: Need):  # type: ignore[no-untyped-def]
    def caller(request: Request) -> str:
        outcome = check(need, request.headers.get("authorization"), request.app.state.fusebox.settings)
        if isinstance(outcome, tuple):
            raise HTTPException(outcome[0], outcome[1], headers={"WWW-Authenticate": "Bearer"})
        return outcome
    return caller


#: FastAPI dependencies: the caller's name, or a 401/403.
api_caller = _dependency("api")
operator = _dependency("operator")


def reader(request: Request) -> str:
    """For ``GET /jobs/{id}``: public when ``FUSEBOX_API_OPEN_READS``, else a token."""
    need = required(request.method, request.url.path, request.app.state.fusebox.settings)
    outcome = check(need, request.headers.get("authorization"), request.app.state.fusebox.settings)
    if isinstance(outcome, tuple):
        raise HTTPException(outcome[0], outcome[1], headers={"WWW-Authenticate": "Bearer"})
    return outcome
