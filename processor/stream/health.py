"""The processor's HTTP side: liveness, readiness and Prometheus metrics.

`GET /health/live`: 200 whenever the event loop answers (a loop blocked or dead answers nothing:
the probe's timeout is the signal). `GET /health/ready`: 200 when the processor can do its work —
PostgreSQL answers `SELECT 1` within a bound, the Kafka producer and consumer are started and a
broker answers a metadata request within a bound, partitions are assigned, and no batch has been
in stage 1 longer than `stuck_after_seconds` — else 503 naming what is wrong. `GET /metrics`: processor/stream/metrics.py. Served by uvicorn in the
processor's own event loop, on `CLOUDWALLET_HEALTH_PORT` (0: not served).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("processor.health")
DATABASE_TIMEOUT_S = 2.0
BROKER_TIMEOUT_S = 2.0


@dataclass(kw_only=True)
class Readiness:
    """What readiness reads from the running processor (callables: read when asked)."""

    engine: sa.Engine
    broker_connected: Callable[[], bool]
    broker_answers: Callable[[], Awaitable[object]]  # raises (or times out) when no broker answers
    partitions_assigned: Callable[[], int]
    batch_running_since: Callable[[], float | None]  # time.monotonic() when stage 1 took the current batch
    stuck_after_seconds: float

    async def problems(self) -> list[str]:
        found: list[str] = []
        # Both round trips at once: a probe answers within the larger bound, not their sum.
        database, broker = await asyncio.gather(self._database_answers(), self._broker_answers())
        if not database:
            found.append(f"PostgreSQL did not answer SELECT 1 within {DATABASE_TIMEOUT_S:.0f}s")
        if not self.broker_connected():
            found.append("the Kafka producer or consumer is not started")
        elif not broker:
            found.append(f"no Kafka broker answered a metadata request within {BROKER_TIMEOUT_S:.0f}s")
        elif self.partitions_assigned() == 0:
            found.append("no partition of the requests topic is assigned to this processor")
        since = self.batch_running_since()
        if since is not None and (running := time.monotonic() - since) > self.stuck_after_seconds:
            found.append(f"one batch has been in stage 1 for {running:.0f}s (bound {self.stuck_after_seconds:.0f}s)")
        return found

    async def _broker_answers(self) -> bool:
        if not self.broker_connected():
            return False
        try:
            await asyncio.wait_for(self.broker_answers(), timeout=BROKER_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure is "not ready", said in the answer
            return False
        return True

    async def _database_answers(self) -> bool:
        def select_one() -> None:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(select_one), timeout=DATABASE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure is "not ready", said in the answer
            return False
        return True


def health_app(readiness: Readiness) -> Starlette:
    async def live(_: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    async def ready(_: Request) -> JSONResponse:
        problems = await readiness.problems()
        return JSONResponse({"status": "not ready" if problems else "ready", "problems": problems}, status_code=503 if problems else 200)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/health/live", live), Route("/health/ready", ready), Route("/metrics", metrics)])


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The processor owns SIGTERM and SIGINT (FastStream's graceful shutdown): uvicorn's
        # serve() would take them over for as long as it runs.
        yield


class HealthServer:
    """uvicorn serving `health_app` as a task of the processor's loop (`start` / `stop`)."""

    def __init__(self, *, readiness: Readiness, host: str, port: int) -> None:
        config = uvicorn.Config(health_app(readiness), host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="health-server")

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
