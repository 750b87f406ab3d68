"""The gateway's Prometheus metrics: requests by route and status, their duration, and how long
writes waited for their result. Served at `GET /metrics` (routes/metrics.py, operator keys).

Labels are the route's template (`/projects/{projectId}/wallets/{walletId}`), never the raw
path: a client cannot mint a time series. A request no route matched is labelled `unmatched`.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS: Final = Counter("cloudwallet_gateway_requests_total", "HTTP requests answered, by method, route template and status", ["method", "route", "status"])
REQUEST_SECONDS: Final = Histogram(
    "cloudwallet_gateway_request_seconds", "Time to answer an HTTP request, by method and route template", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
RESULT_WAIT_SECONDS: Final = Histogram(
    "cloudwallet_gateway_result_wait_seconds", "Time a write waited for its result from the processor (a 202 when none came in time)", ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip


# The methods a label may name: any other token a client sends is "other" (no series minted).
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what a request that raised past every handler is answered

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # set by the router on the very scope dict passed down
            template = getattr(route, "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUESTS.labels(method=method, route=template, status=str(status)).inc()
            REQUEST_SECONDS.labels(method=method, route=template).observe(time.monotonic() - started)
