"""How the server answers errors: a Redis or breaker store that stopped answering is a 503,
bad input a 422 that always serialises."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from breaker import StoreUnavailable
from breaker.errors import InputError


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


async def _store_down(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"Redis unreachable: {type(exc).__name__}: {exc}"}, status_code=503)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes the offending input and field names as they came: a
    # lone surrogate in a field name ("\udcff") cannot be encoded as UTF-8 and a NaN
    # cannot be written as JSON, so a caller's bad request became a 500.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)


async def _bad_input(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    """Installs the server's exception handlers on ``app``.

    Parameters:
      app: the FastAPI app.
    """
    app.add_exception_handler(StoreUnavailable, _store_down)
    app.add_exception_handler(redis.RedisError, _redis_down)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InputError, _bad_input)
