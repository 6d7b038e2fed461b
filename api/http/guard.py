"""What the server refuses before it reads a single byte of a request's body.

FastAPI reads and parses a whole JSON body before any dependency runs, so a token check
there comes too late: a client without a token could make the server read and parse
hundreds of megabytes (issue 26: a 300 MB POST took 4.7 s and 900 MB to get its 401).
:class:`RequestGuard` is plain ASGI, in front of everything:

1. the token a route needs (api.http.auth), from the headers alone;
2. ``Content-Length`` above ``FUSEBOX_API_MAX_BODY``: 413 at once;
3. a body without a length (chunked) is counted as it streams in, and refused with 413
   the moment it passes the limit; nothing beyond it is read.

A refused request's connection is closed by the server (the body is never drained).
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from api.http.auth import check, required
from workers.settings import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: token and size checked before the app (and FastAPI's body parsing).

    Parameters:
      app: the application behind it.
      settings: the tokens and ``api_max_body``.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings, self.limit = app, settings, settings.api_max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        outcome = check(required(scope["method"], scope["path"], self.settings), headers.get("authorization"),
                        self.settings)
        if isinstance(outcome, tuple):
            await _refuse(send, *outcome, extra=[(b"www-authenticate", b"Bearer")])
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _refuse(send, 400, "bad Content-Length")
                return
            if int(length) > self.limit:
                await _refuse(send, 413, f"request body over {self.limit} bytes (FUSEBOX_API_MAX_BODY)")
                return
        seen, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answered here and now; the app is told the client went away, and
                    # whatever it still sends is dropped.
                    refused = True
                    if not started:
                        await _refuse(send, 413, f"request body over {self.limit} bytes (FUSEBOX_API_MAX_BODY)")
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:
                raise


async def _refuse(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
