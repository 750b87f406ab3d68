"""The request body limit (`GatewaySettings.max_body_bytes`), for every body however it is sent.

A `Content-Length` over the limit is refused at once, before the app runs. A body without one
(`Transfer-Encoding: chunked`) is counted while the app reads it from the ASGI stream: the read
that takes it past the limit raises `BodyTooLarge` instead of handing that chunk over, so the app
never holds more than the limit, nothing is parsed, and the rest of the body is never read.

`BodyTooLarge` is an HTTPException on purpose: FastAPI's body reader lets those through (it
turns any other exception into a 400), and the gateway's handler answers it `413
PayloadTooLarge` with the same body as the Content-Length refusal (errors.framework_error).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.gateway.http_errors import error_response, payload_too_large, too_large_message

# More digits than this cannot be under any limit the settings allow (64 MiB), and int() of a
# few thousand digits would raise.
_LENGTH = re.compile(r"[0-9]{1,18}")


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, *, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, limit=self.max_bytes):
            await error_response(payload_too_large(limit=self.max_bytes))(scope, receive, send)
            return
        await self.app(scope, counting(receive, limit=self.max_bytes), send)


def declared_too_large(scope: Scope, *, limit: int) -> bool:
    """A Content-Length over the limit, or one that is not a number (refused alike, as before)."""
    length = Headers(scope=scope).get("content-length")
    return length is not None and (_LENGTH.fullmatch(length) is None or int(length) > limit)


def counting(receive: Receive, *, limit: int) -> Receive:
    """`receive`, raising BodyTooLarge on the read that takes the body past `limit` bytes (and on
    every read after it: the chunk over the limit is dropped, never handed to the app)."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit=limit)
        return message

    return counted
