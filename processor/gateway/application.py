"""The gateway app: `create_app(settings)` builds the FastAPI app that serves every route of
routes/ (reads from PostgreSQL, writes through Kafka). See docs/gateway.md.

Order of checks on every request: the API key (401), the key's reach (403, the same answer
whether or not the thing asked for exists), both before the request is read (access.py); then
the body's size (413, body_limit.py) and type (415), the input (422 naming the field), then
existence (404). Errors of every kind have one shape (errors.py).

The app's lifespan opens what the routes use (backends.py): a database engine with the reads,
the API key store and the signing-key store, and one shared WalletClient. Either side can be
given to `create_app` instead (`backends=`, `client=`): then the lifespan leaves it alone, and
the app runs without PostgreSQL or Kafka (the unit tests give fakes).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from processor.client import WalletClient
from processor.gateway.backends import Backends, Publisher
from processor.gateway.body_limit import BodyLimit
from processor.gateway.http_errors import install_handlers
from processor.gateway.gateway_settings import GatewaySettings
from processor.gateway.api_keys import KeyStore
from processor.gateway.reads import Reads
from processor.gateway.request_metrics import RequestMetrics
from processor.gateway.routes import ROUTERS
from processor.gateway.signing_key_store import SigningKeyStore

log = logging.getLogger("gateway")

DESCRIPTION = (
    "Every Cloud Wallet endpoint over HTTP. Reads come from PostgreSQL; writes go through Kafka "
    "and answer with the processor's result. Authenticate with the X-Api-Key header."
)


def create_app(
    settings: GatewaySettings, *, client: Publisher | None = None, backends: Backends | None = None, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The gateway app. Without `client` its lifespan starts (and stops) its own WalletClient;
    without `backends` it opens (and disposes) a database engine for the reads and the key stores.
    With `tracer_provider` every request gets a server span, continuing an incoming
    `traceparent`, and the writes it publishes carry that trace to the processor."""
    lifespan = _lifespan(settings, client=client, backends=backends, tracer_provider=tracer_provider)
    app = FastAPI(title="Cloud Wallet gateway", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    if backends is not None:
        _install(app, backends)
    if client is not None:
        app.state.client = client
    install_handlers(app)
    # Every body, with a Content-Length or chunked: counted as it is read, 413 past the limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outermost: counts every request, a refused body's 413 included (request_metrics.py).
    app.add_middleware(RequestMetrics)
    for router in ROUTERS:
        app.include_router(router)
    if tracer_provider is not None:
        _trace_requests(app, tracer_provider=tracer_provider)
    return app


# Headers whose values never go into a span, even when an operator asks the instrumentation to
# record request headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST).
SECRET_HEADERS = ["x-api-key", "authorization", "cookie", "set-cookie", "proxy-authorization"]


def _trace_requests(app: FastAPI, *, tracer_provider: TracerProvider) -> None:
    """A server span per request, named by its route template (OpenTelemetry's FastAPI
    instrumentation); probes and scrapes are left out. It records the URL, the client's address
    and user agent (docs/operations.md), no header unless configured, and never a secret one."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, excluded_urls="/health$,/metrics$", exclude_spans=["receive", "send"],
        http_capture_headers_sanitize_fields=SECRET_HEADERS,
    )  # fmt: skip


def _install(app: FastAPI, backends: Backends) -> None:
    """Where the dependencies (dependencies.py) and the access check (access.py) find them."""
    app.state.reads = backends.reads
    app.state.keys = backends.keys
    app.state.signing_keys = backends.signing_keys


def database_backends(engine: sa.Engine, settings: GatewaySettings) -> Backends:
    """The real backends, all on one engine."""
    keys = KeyStore(engine, cache_seconds=settings.api_key_cache_seconds)
    return Backends(reads=Reads(engine), keys=keys, signing_keys=SigningKeyStore(engine))


def _lifespan(
    settings: GatewaySettings, *, client: Publisher | None, backends: Backends | None, tracer_provider: TracerProvider | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if backends is None:
                engine = sa.create_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=16, pool_pre_ping=True)
                stack.callback(engine.dispose)
                _install(app, database_backends(engine, settings))
            if client is None:
                app.state.client = await stack.enter_async_context(_own_client(settings, tracer_provider=tracer_provider))
            log.info("gateway ready: requests to %s, results from %s", settings.requests_topic, settings.results_topic)
            yield

    return lifespan


@asynccontextmanager
async def _own_client(settings: GatewaySettings, *, tracer_provider: TracerProvider | None) -> AsyncIterator[WalletClient]:
    """The gateway's WalletClient, started and (even when starting failed) stopped."""
    client = WalletClient(
        kafka=settings.kafka,
        signing_key=settings.client_signing_key,  # the gateway's operator signing key
        requests_topic=settings.requests_topic,
        results_topic=settings.results_topic,
        tracer_provider=tracer_provider,
    )
    try:
        # The processor creates the topics; the gateway's principal may only write requests and
        # read results (processor/stream/acls.py).
        await client.start()
        if settings.client_signing_key is None:
            log.warning(
                "the gateway has no signing key (CLOUDWALLET_SIGNING_KEY[_FILE]): a processor that requires signatures "
                "answers every write Unauthorized (500); give it an operator key: cloudwallet signing-key create --operator"
            )
        yield client
    finally:
        await client.stop()
