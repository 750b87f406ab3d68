"""The gateway's HTTP layer in-process, without Kafka or PostgreSQL.

The real app from `create_app`, driven over ASGI (httpx.ASGITransport, or raw ASGI calls), built
with fakes for the key store, the reads, the signing-key store (`backends=`) and the Kafka client
(`client=`): its lifespan then opens nothing. Covered: the body limit on every body (Content-Length or
chunked), the documented error codes, and the order of checks (401, then 403, then 422) for
every key kind on every endpoint; the signing-key endpoints' reach, shapes and their 503 without
a master signing secret.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from fastapi.dependencies.utils import get_flat_params
from fastapi.params import ParamTypes
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.client import ResultTimeout
from processor.gateway.access import GatewayRoute, Reach, declared_reach
from processor.gateway.application import create_app
from processor.gateway.backends import Backends
from processor.gateway.http_errors import GatewayCode, GatewayError, framework_error
from processor.gateway.api_keys import KeyKind, Principal
from processor.gateway.bodies import Page, SigningKeyView
from processor.gateway.reads import Paging
from processor.gateway.gateway_settings import GatewaySettings
from processor.gateway.routes import ROUTERS
from schemas.signing import SigningKey, key_for, new_key_id
from processor.signing_keys import CreatedSigningKey, SigningKeyRow
from schemas.errors import ErrorCode
from schemas.results import WalletView

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 1_048_576
CHUNK = 64 * 1024
MIB = 1_048_576

# --- fakes -----------------------------------------------------------------------------------

PRINCIPALS = {
    "operator": Principal(key_id="k-op", kind=KeyKind.operator),
    "project": Principal(key_id="k-p", kind=KeyKind.project, project_id="p"),
    "other": Principal(key_id="k-q", kind=KeyKind.project, project_id="q"),
    "customer": Principal(key_id="k-c", kind=KeyKind.customer, project_id="p", customer_id="carol"),
}


class FakeKeys:
    def lookup(self, token: str) -> Principal | None:
        return PRINCIPALS.get(token)


def _wallet(*, wallet_id: str, customer_id: str | None) -> WalletView:
    return WalletView(
        project_id="p",
        wallet_id=wallet_id,
        asset_id="usd",
        customer_id=customer_id,
        name="",
        description="",
        status="Open",
        balance="0.00",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@dataclass
class FakeReads:
    """Just what the tests reach; `fail_with` makes the wallet lookup raise."""

    wallets: dict[str, WalletView] = field(
        default_factory=lambda: {
            "carol-w": _wallet(wallet_id="carol-w", customer_id="carol"),
            "dave-w": _wallet(wallet_id="dave-w", customer_id="dave"),
            "sys": _wallet(wallet_id="sys", customer_id=None),
        }
    )
    wallet_lookups: list[str] = field(default_factory=list)
    fail_with: Exception | None = None
    projects: set[str] = field(default_factory=lambda: {"p"})

    def get_wallet(self, project_id: str, wallet_id: str) -> WalletView | None:
        self.wallet_lookups.append(wallet_id)
        if self.fail_with is not None:
            raise self.fail_with
        return self.wallets.get(wallet_id) if project_id == "p" else None

    def project_exists(self, project_id: str) -> bool:
        return project_id in self.projects


@dataclass
class FakeSigningKeys:
    """Signing keys in memory; tokens are real (derived from the master the route passes in)."""

    rows: dict[str, SigningKeyRow] = field(default_factory=dict)
    masters: list[bytes] = field(default_factory=list)

    def create(self, *, master: bytes, project_id: str, label: str | None) -> CreatedSigningKey:
        self.masters.append(master)
        key_id = new_key_id()
        row = SigningKeyRow(key_id=key_id, project_id=project_id, label=label or None, created_at=datetime.now(UTC), revoked_at=None)
        self.rows[key_id] = row
        return CreatedSigningKey(key=key_for(master, key_id), row=row)

    def list(self, project_id: str, paging: Paging) -> Page:
        rows = sorted((r for r in self.rows.values() if r.project_id == project_id), key=lambda r: (-r.created_at.timestamp(), r.key_id))
        found = rows[paging.offset : paging.offset + paging.page_size + 1]
        items = [SigningKeyView(**{name: getattr(r, name) for name in SigningKeyView.model_fields}) for r in found[: paging.page_size]]
        return Page(items=items, page=paging.page, page_size=paging.page_size, has_more=len(found) > paging.page_size)

    def revoke(self, project_id: str, key_id: str) -> datetime | None:
        row = self.rows.get(key_id)
        if row is None or row.project_id != project_id or row.revoked_at is not None:
            return None
        self.rows[key_id] = SigningKeyRow(**{**row.__dict__, "revoked_at": datetime.now(UTC)})
        return self.rows[key_id].revoked_at


@dataclass
class FakeClient:
    """Never answers in time (202), or raises `fail_with`; remembers what was submitted."""

    submitted: list[Any] = field(default_factory=list)
    fail_with: Exception | None = None

    async def submit(self, model: Any, *, timeout: float) -> Any:
        self.submitted.append(model)
        raise self.fail_with or ResultTimeout()


@dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient
    reads: FakeReads
    client: FakeClient
    signing_keys: FakeSigningKeys


# model_construct: no environment, no validators (the Kafka settings need none here).
SETTINGS = GatewaySettings.model_construct(max_body_bytes=LIMIT, result_wait_seconds=0.1)


@dataclass
class FakeApp:
    """An app built with fakes as its backends and client (`create_app(backends=, client=)`)."""

    app: FastAPI
    reads: FakeReads
    client: FakeClient
    signing_keys: FakeSigningKeys

    @classmethod
    def build(cls, settings: GatewaySettings) -> FakeApp:
        reads, client, signing = FakeReads(), FakeClient(), FakeSigningKeys()
        app = create_app(settings, client=client, backends=Backends(reads=reads, keys=FakeKeys(), signing_keys=signing))
        return cls(app=app, reads=reads, client=client, signing_keys=signing)


def renew(fake: Any) -> None:
    """Every field of a dataclass fake back to its default: the app keeps the same object."""
    for item in fields(fake):
        setattr(fake, item.name, item.default_factory() if item.default_factory is not MISSING else item.default)


@asynccontextmanager
async def fake_gateway(built: FakeApp) -> AsyncIterator[Gateway]:
    """`built`, its fakes as new, and an HTTP client on it."""
    for fake in (built.reads, built.client, built.signing_keys):
        renew(fake)
    # raise_app_exceptions=False: the 500 tests need the answer, not the exception re-raised.
    transport = httpx.ASGITransport(app=built.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield Gateway(app=built.app, http=http, reads=built.reads, client=built.client, signing_keys=built.signing_keys)


@pytest.fixture(scope="module")
def shared_app() -> FakeApp:
    """One app for the module: the first request to each of its routes is slow-ish."""
    return FakeApp.build(SETTINGS)


@pytest.fixture
async def gw(shared_app: FakeApp) -> AsyncIterator[Gateway]:
    async with fake_gateway(shared_app) as gateway:
        yield gateway


def key(name: str) -> dict[str, str]:
    return {"X-Api-Key": name}


JSON = {"content-type": "application/json"}


def code_of(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def too_large_body() -> dict[str, Any]:
    message = f"request bodies are limited to {LIMIT} bytes"
    return {"error": {"code": "PayloadTooLarge", "message": message, "operation_index": None, "fields": []}}


# --- 1. the body limit holds for every body ----------------------------------------------------


@dataclass
class Upload:
    """A chunked body of `total` bytes in CHUNK pieces; counts the pieces the app pulled."""

    total: int
    pulled: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        piece = b" " * CHUNK  # whitespace: read whole, it would be a 422 "not valid JSON", not a 413
        for _ in range(self.total // CHUNK):
            self.pulled += 1
            yield piece


@pytest.mark.parametrize("total", [4 * MIB, 48 * MIB], ids=["4MiB", "48MiB"])
async def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(gw: Gateway, total: int) -> None:
    upload = Upload(total=total)
    response = await gw.http.post("/projects/p/transactions", content=upload.chunks(), headers={**key("operator"), **JSON})

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413 and response.json() == too_large_body()
    # Stopped at the chunk that passed the limit: 16 chunks are 1 MiB, the 17th is one too many.
    assert upload.pulled == LIMIT // CHUNK + 1 < total // CHUNK
    assert gw.client.submitted == []


async def test_a_chunked_body_within_the_limit_is_read(gw: Gateway) -> None:
    body = b'{"reference_id": "r1", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}]}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = await gw.http.post("/projects/p/transactions", content=chunks(), headers={**key("operator"), **JSON})
    assert response.status_code == 202, response.text  # FakeClient never answers in time
    assert [model.reference_id for model in gw.client.submitted] == ["r1"]


@pytest.mark.parametrize(("size", "status"), [(LIMIT, 422), (LIMIT + 1, 413)], ids=["at-the-limit", "one-byte-over"])
async def test_the_limit_is_exact_for_chunked_bodies(gw: Gateway, size: int, status: int) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b" " * (size - 1)
        yield b" "

    response = await gw.http.post("/projects/p/transactions", content=chunks(), headers={**key("operator"), **JSON})
    assert response.status_code == status, response.text  # 422: read whole, and not JSON


async def test_without_a_key_a_chunked_body_is_not_read_at_all(gw: Gateway) -> None:
    upload = Upload(total=48 * MIB)
    response = await gw.http.post("/projects/p/transactions", content=upload.chunks(), headers=JSON)
    assert response.status_code == 401 and upload.pulled == 0


async def asgi_call(app: FastAPI, *, headers: dict[str, str], path: str = "/projects/p/transactions") -> tuple[int, bytes, int]:
    """One raw ASGI request whose body never ends: (status, body, how often `receive` was called)."""
    calls = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.request", "body": b" " * CHUNK, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway", 80),
    }
    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], body, calls


@pytest.mark.parametrize("length", [str(LIMIT + 1), str(10**40), "12abc"])
async def test_a_content_length_over_the_limit_is_refused_before_anything_is_read(gw: Gateway, length: str) -> None:
    # No key either: a declared size over the limit is answered first (documented).
    status, body, calls = await asgi_call(gw.app, headers={"content-length": length, **JSON})
    assert status == 413 and httpx.Response(413, content=body).json() == too_large_body()
    assert calls == 0


@contextmanager
def real_server(app: ASGIApp) -> Iterator[str]:
    """`app` served by uvicorn on a loopback port, in a thread (no lifespan: the state is set)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def pulling(app: ASGIApp, pulled: list[int]) -> ASGIApp:
    """`app`, adding up in `pulled` the body bytes it takes from the server."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            pulled.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    return wrapped


async def test_a_real_server_answers_413_to_a_48_mib_chunked_upload(gw: Gateway) -> None:
    # The reviewer's case over a real socket: uvicorn, chunked, 48 MiB.
    pulled: list[int] = []
    upload = Upload(total=48 * MIB)
    with real_server(pulling(gw.app, pulled)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post("/projects/p/transactions", content=upload.chunks(), headers={**key("operator"), **JSON})
    assert response.status_code == 413 and response.json() == too_large_body()
    # The app took the limit and the piece that passed it, never the rest.
    assert LIMIT < sum(pulled) <= LIMIT + max(pulled)


# --- 2. every error code the gateway answers is documented ------------------------------------

DOC = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("code", [*GatewayCode, *ErrorCode], ids=str)
def test_every_error_code_is_documented(code: str) -> None:
    assert f"`{code}`" in DOC, f"docs/gateway.md does not list the error code {code}"


def test_a_gateway_error_takes_only_a_registered_code() -> None:
    with pytest.raises(ValueError):
        GatewayError(400, "HttpError", "not a code of the gateway")  # type: ignore[arg-type]


def test_a_framework_error_the_gateway_does_not_expect_is_an_internal_error() -> None:
    error = framework_error(StarletteHTTPException(status_code=418))
    assert (error.status_code, error.code) == (500, GatewayCode.InternalError)


Call = Callable[[Gateway], Awaitable[httpx.Response]]


def _post_body(content: bytes, headers: dict[str, str] | None = None) -> Call:
    async def call(gw: Gateway) -> httpx.Response:
        return await gw.http.post("/projects/p/transactions", content=content, headers={**key("operator"), **(headers or JSON)})

    return call


def _get(path: str, name: str | None = "operator") -> Call:
    async def call(gw: Gateway) -> httpx.Response:
        return await gw.http.get(path, headers=key(name) if name else {})

    return call


async def _kafka_down(gw: Gateway) -> httpx.Response:
    gw.client.fail_with = KafkaConnectionError("no broker")
    return await _post_body(b'{"reference_id": "r", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}]}')(gw)


async def _database_down(gw: Gateway) -> httpx.Response:
    gw.reads.fail_with = sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
    return await _get("/projects/p/wallets/carol-w")(gw)


async def _database_down_for_a_customer(gw: Gateway) -> httpx.Response:
    # The reach check's own lookup (the wallet's owner) fails alike.
    gw.reads.fail_with = sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
    return await _get("/projects/p/wallets/carol-w", "customer")(gw)


async def _bug(gw: Gateway) -> httpx.Response:
    gw.reads.fail_with = RuntimeError("a bug")
    return await _get("/projects/p/wallets/carol-w")(gw)


async def _no_master_secret(gw: Gateway) -> httpx.Response:
    return await gw.http.post("/projects/p/signing-keys", json={"label": "x"}, headers=key("operator"))


async def _wrong_method(gw: Gateway) -> httpx.Response:
    return await gw.http.patch("/projects/p/transactions", headers=key("operator"))


# What answers each gateway code, framework-level ones included.
ANSWERS: list[tuple[str, Call, int, GatewayCode]] = [
    ("no key", _get("/projects", None), 401, GatewayCode.Unauthorized),
    ("unknown key", _get("/projects", "cwk_nope"), 401, GatewayCode.Unauthorized),
    ("no reach", _get("/projects", "customer"), 403, GatewayCode.Forbidden),
    ("no route", _get("/nowhere"), 404, GatewayCode.NotFound),
    ("wrong method", _wrong_method, 405, GatewayCode.MethodNotAllowed),
    ("form body", _post_body(b"a=b", {"content-type": "application/x-www-form-urlencoded"}), 415, GatewayCode.UnsupportedMediaType),
    ("JSON syntax", _post_body(b"{not json"), 422, GatewayCode.ValidationError),
    ("not UTF-8", _post_body(b'{"reference_id": "\xff"}'), 422, GatewayCode.ValidationError),
    ("nested too deeply", _post_body(b"[" * 100_000), 422, GatewayCode.ValidationError),
    ("5000-digit number", _post_body(b'{"reference_id": ' + b"1" * 5000 + b"}"), 422, GatewayCode.ValidationError),
    ("bad parameter", _get("/projects/p/wallets/carol-w/entries?page_size=0"), 422, GatewayCode.ValidationError),
    ("no wallet", _get("/projects/p/wallets/nope"), 404, GatewayCode.WalletNotFound),
    ("no project", _get("/projects/q/wallets/nope"), 404, GatewayCode.ProjectNotFound),
    ("no signing key", lambda gw: gw.http.delete("/projects/p/signing-keys/0123456789abcdef", headers=key("operator")), 404, GatewayCode.SigningKeyNotFound),
    ("no master signing secret", _no_master_secret, 503, GatewayCode.ServiceUnavailable),
    ("Kafka down", _kafka_down, 503, GatewayCode.ServiceUnavailable),
    ("PostgreSQL down", _database_down, 503, GatewayCode.ServiceUnavailable),
    ("PostgreSQL down, reach", _database_down_for_a_customer, 503, GatewayCode.ServiceUnavailable),
    ("a bug", _bug, 500, GatewayCode.InternalError),
]


@pytest.mark.parametrize(("call", "status", "code"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
async def test_errors_answer_documented_codes(gw: Gateway, call: Call, status: int, code: GatewayCode) -> None:
    response = await call(gw)
    assert (response.status_code, code_of(response)) == (status, code.value), response.text
    assert f"`{code_of(response)}`" in DOC


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"reference_id": ' + b"1" * 5000 + b"}", "cannot be read as JSON"),
    ],
    ids=["syntax", "utf-8", "depth", "digits"],
)
async def test_a_body_that_is_not_json_is_a_validation_error_of_the_body(gw: Gateway, content: bytes, reason: str) -> None:
    response = await _post_body(content)(gw)
    fields = response.json()["error"]["fields"]
    assert response.status_code == 422 and [item["field"] for item in fields] == ["body"]
    assert reason in fields[0]["reason"]


# --- 3. 401, then 403, then 422: every key kind, every endpoint --------------------------------

ALL_ROUTES = [route for router in ROUTERS for route in router.routes]
# Every route with input to malform; GET /metrics (operator keys, no input) has its own test.
ROUTES = [route for route in ALL_ROUTES if isinstance(route, APIRoute) and declared_reach(route.dependant) is not None and route.path != "/metrics"]
# Values every path parameter refuses (422 for a key that reaches the request).
MALFORMED = {"projectId": "bad!", "walletId": "bad!", "assetId": "bad!", "txId": "bad!", "customerId": "  ", "referenceId": "\x01", "keyId": "bad!", "holdId": "bad!"}


def test_every_route_checks_its_reach_first() -> None:
    assert len(ROUTES) == 40  # the 28 seed endpoints, the request-result read, the 3 signing-key endpoints, a balance at an instant, a statement, a reversal, 5 of holds
    assert all(isinstance(route, GatewayRoute) for route in ALL_ROUTES)
    assert {route.path for route in ALL_ROUTES if route not in ROUTES} == {"/health", "/metrics"}


def _method(route: APIRoute) -> str:
    (method,) = route.methods
    return method


def _route_id(route: APIRoute) -> str:
    return f"{_method(route)} {route.path}"


def _query_names(route: APIRoute) -> set[str]:
    """The route's query parameters, its dependencies' included (paging is one)."""
    return {param.alias for param in get_flat_params(route.dependant) if getattr(param.field_info, "in_", None) == ParamTypes.query}


def _has_more_to_malform(route: APIRoute) -> bool:
    """Whether anything but projectId can be malformed (a parameter, a query, a body)."""
    names = set(route.param_convertors) - {"projectId"}
    return bool(names) or route.body_field is not None or "page_size" in _query_names(route)


async def malformed_call(gw: Gateway, route: APIRoute, *, key_name: str | None, project: str = "bad!") -> httpx.Response:
    """`route` with every input malformed: path parameters (projectId = `project`), page_size, the body."""
    values = {name: project if name == "projectId" else MALFORMED[name] for name in route.param_convertors}
    path = route.path_format.format(**{name: quote(value, safe="") for name, value in values.items()})
    query = "?page_size=0" if "page_size" in _query_names(route) else ""
    headers = {**JSON, **(key(key_name) if key_name else {})}
    content = b"{not json" if route.body_field is not None else None
    return await gw.http.request(_method(route), path + query, content=content, headers=headers)


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
async def test_without_a_key_every_endpoint_answers_401_first(gw: Gateway, route: APIRoute) -> None:
    for key_name in (None, "cwk_unknown"):
        response = await malformed_call(gw, route, key_name=key_name)
        assert response.status_code == 401 and code_of(response) == "Unauthorized", response.text


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
async def test_a_customer_key_gets_403_before_422_everywhere(gw: Gateway, route: APIRoute) -> None:
    for project in ("p", "bad!"):
        response = await malformed_call(gw, route, key_name="customer", project=project)
        assert response.status_code == 403, (project, response.text)
    # A malformed wallet ID cannot be the customer's: refused without looking it up.
    assert gw.reads.wallet_lookups == []


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
async def test_a_project_key_gets_403_outside_its_project_before_422(gw: Gateway, route: APIRoute) -> None:
    response = await malformed_call(gw, route, key_name="other", project="p")
    # GET /projects is every key's but customers' (it lists the key's own project): its 422 stands.
    expected = 422 if declared_reach(route.dependant) is Reach.staff else 403
    assert response.status_code == expected, response.text


@pytest.mark.parametrize("route", [r for r in ROUTES if _has_more_to_malform(r)], ids=_route_id)
async def test_a_project_key_gets_422_inside_its_project(gw: Gateway, route: APIRoute) -> None:
    response = await malformed_call(gw, route, key_name="project", project="p")
    expected = 403 if declared_reach(route.dependant) is Reach.operator else 422
    assert response.status_code == expected, response.text
    assert gw.client.submitted == []


async def test_metrics_are_for_operator_keys_and_count_requests_by_route_template(gw: Gateway) -> None:
    await gw.http.get("/projects/p/wallets/carol-w", headers=key("operator"))
    assert (await gw.http.get("/metrics")).status_code == 401
    assert (await gw.http.get("/metrics", headers=key("project"))).status_code == 403
    scraped = await gw.http.get("/metrics", headers=key("operator"))
    assert scraped.status_code == 200
    counted = [line for line in scraped.text.splitlines() if line.startswith("cloudwallet_gateway_requests_total{")]
    assert any('route="/projects/{projectId}/wallets/{walletId}"' in line and 'status="200"' in line for line in counted), counted
    assert not any("carol-w" in line for line in counted)  # the template, never the raw path


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
async def test_an_operator_key_reaches_everything_so_gets_422(gw: Gateway, route: APIRoute) -> None:
    response = await malformed_call(gw, route, key_name="operator")
    assert response.status_code == 422 and code_of(response) == "ValidationError", response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/projects/p/wallets/carol-w", 200),
        ("/projects/p/wallets/carol-w/entries?page_size=0", 422),  # its wallet: the input is checked
        ("/projects/p/wallets/dave-w/entries?page_size=0", 403),  # another customer's: 403 first
        ("/projects/p/wallets/sys?page_size=0", 403),
        ("/projects/p/wallets/nope/entries?from=never", 403),  # no such wallet: the same 403
        ("/projects/p/customers/carol/wallets?page_size=0", 422),
        ("/projects/p/customers/dave/wallets?page_size=0", 403),
        ("/projects/q/wallets/carol-w", 403),
        ("/projects?page_size=0", 403),
    ],
)
async def test_a_customer_key_reaches_its_own_customer_id_and_wallets(gw: Gateway, path: str, status: int) -> None:
    response = await gw.http.get(path, headers=key("customer"))
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["wallet_id"] == "carol-w"


@pytest.mark.parametrize("wallet_id", ["carol-w", "a" * 64, "a" * 65, "bad!", "w\n", "wäl", "a.b:c@d+e-f_g", " w"])
async def test_a_customer_key_looks_up_exactly_the_wallet_ids_the_route_accepts(gw: Gateway, wallet_id: str) -> None:
    path = f"/projects/p/wallets/{quote(wallet_id, safe='')}"
    operator = await gw.http.get(path, headers=key("operator"))
    gw.reads.wallet_lookups.clear()
    customer = await gw.http.get(path, headers=key("customer"))
    # (Its own wallet is looked up again by the route, to answer it.)
    looked_up = gw.reads.wallet_lookups[:1] == [wallet_id]
    # The route refuses the ID (422) exactly when the customer's reach check did not look it up.
    assert (operator.status_code == 422) is not looked_up, (operator.status_code, gw.reads.wallet_lookups)
    assert customer.status_code == (200 if wallet_id == "carol-w" else 403)


# --- 4. signing keys: a project's own, made with the master signing secret -----------------------

MASTER = b"m" * 48


@pytest.fixture(scope="module")
def master_app(tmp_path_factory: pytest.TempPathFactory) -> FakeApp:
    """An app with a master signing secret configured (SETTINGS have none)."""
    master_file = tmp_path_factory.mktemp("master") / "master"
    master_file.write_bytes(MASTER + b"\n")
    return FakeApp.build(SETTINGS.model_copy(update={"signing_master_key_file": master_file}))


@pytest.fixture
async def master_gw(master_app: FakeApp) -> AsyncIterator[Gateway]:
    async with fake_gateway(master_app) as gateway:
        yield gateway


SIGNING_CALLS = [
    ("POST", "/projects/p/signing-keys"),
    ("GET", "/projects/p/signing-keys"),
    ("DELETE", "/projects/p/signing-keys/0123456789abcdef"),
]


@pytest.mark.parametrize(("method", "path"), SIGNING_CALLS, ids=[m for m, _ in SIGNING_CALLS])
@pytest.mark.parametrize(
    ("key_name", "status"),
    [(None, 401), ("cwk_unknown", 401), ("customer", 403), ("other", 403), ("project", None), ("operator", None)],
    ids=["no-key", "unknown-key", "customer", "other-project", "project", "operator"],
)
async def test_signing_keys_reach_operator_and_the_projects_own_key(
    master_gw: Gateway, method: str, path: str, key_name: str | None, status: int | None
) -> None:
    headers = key(key_name) if key_name else {}
    response = await master_gw.http.request(method, path, json={"label": "l"} if method == "POST" else None, headers=headers)
    if status is None:  # reached: what the endpoint answers (no key 0123... exists: 404)
        status = {"POST": 201, "GET": 200, "DELETE": 404}[method]
    assert response.status_code == status, response.text
    if status in (401, 403):
        assert code_of(response) == ("Unauthorized" if status == 401 else "Forbidden")
        assert master_gw.signing_keys.rows == {} and master_gw.signing_keys.masters == []


async def test_a_project_key_makes_lists_and_revokes_its_projects_signing_keys(master_gw: Gateway) -> None:
    http, project = master_gw.http, key("project")
    created = await http.post("/projects/p/signing-keys", json={"label": "billing"}, headers=project)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert set(body) == {"key_id", "project_id", "label", "created_at", "token"}
    assert (body["project_id"], body["label"]) == ("p", "billing")
    # The token is the key derived from the gateway's master secret: the processor will accept it.
    signing_key = SigningKey.from_token(body["token"])
    assert signing_key.key_id == body["key_id"] and master_gw.signing_keys.masters == [MASTER]
    assert signing_key.token() == key_for(MASTER, body["key_id"]).token()

    # No body at all is a key without a label.
    bare = await http.post("/projects/p/signing-keys", headers=project)
    assert bare.status_code == 201 and bare.json()["label"] is None, bare.text

    listed = await http.get("/projects/p/signing-keys", headers=project)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert (page["page"], page["page_size"], page["has_more"]) == (1, 50, False)
    assert {item["key_id"] for item in page["items"]} == {body["key_id"], bare.json()["key_id"]}
    assert all(set(item) == {"key_id", "project_id", "label", "created_at", "revoked_at"} for item in page["items"])
    assert "token" not in listed.text and signing_key.secret.get_secret_value() not in listed.text
    first = await http.get("/projects/p/signing-keys?page_size=1", headers=project)
    assert len(first.json()["items"]) == 1 and first.json()["has_more"] is True

    revoked = await http.delete(f"/projects/p/signing-keys/{body['key_id']}", headers=project)
    assert revoked.status_code == 200, revoked.text
    assert set(revoked.json()) == {"key_id", "revoked_at"} and revoked.json()["key_id"] == body["key_id"]
    again = await http.delete(f"/projects/p/signing-keys/{body['key_id']}", headers=project)
    assert again.status_code == 404 and code_of(again) == "SigningKeyNotFound"
    after = {item["key_id"]: item["revoked_at"] for item in (await http.get("/projects/p/signing-keys", headers=project)).json()["items"]}
    assert after[body["key_id"]] is not None and after[bare.json()["key_id"]] is None


async def test_another_projects_signing_key_is_not_found_in_this_one(master_gw: Gateway) -> None:
    # An operator makes a key of q; q's key ID under project p: no such key of p.
    master_gw.reads.projects.add("q")
    made = await master_gw.http.post("/projects/q/signing-keys", json={}, headers=key("operator"))
    assert made.status_code == 201, made.text
    response = await master_gw.http.delete(f"/projects/p/signing-keys/{made.json()['key_id']}", headers=key("project"))
    assert response.status_code == 404 and code_of(response) == "SigningKeyNotFound"
    assert (await master_gw.http.get("/projects/p/signing-keys", headers=key("project"))).json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/projects/p/signing-keys", {"label": "x" * 201}, 422, "body.label"),
        ("POST", "/projects/p/signing-keys", {"label": "x" * 200}, 201, None),
        ("POST", "/projects/p/signing-keys", {"label": "a\x00b"}, 422, "body.label"),
        ("POST", "/projects/p/signing-keys", {"label": 7}, 422, "body.label"),
        ("POST", "/projects/p/signing-keys", {"reference_id": "r"}, 422, "body.reference_id"),
        ("POST", "/projects/nope/signing-keys", {}, 404, None),
        ("GET", "/projects/nope/signing-keys", None, 404, None),
        ("GET", "/projects/p/signing-keys?page_size=501", None, 422, "query.page_size"),
        ("DELETE", "/projects/p/signing-keys/0123456789ABCDEF", None, 422, "path.keyId"),
        ("DELETE", "/projects/p/signing-keys/0123456789abcde", None, 422, "path.keyId"),
        ("DELETE", "/projects/nope/signing-keys/0123456789abcdef", None, 404, None),
    ],
)
async def test_signing_key_input_and_existence(
    master_gw: Gateway, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    response = await master_gw.http.request(method, path, json=body, headers=key("operator"))
    assert response.status_code == status, response.text
    if status == 422:
        assert [item["field"] for item in response.json()["error"]["fields"]] == [field]
    if status == 404:
        assert code_of(response) == "ProjectNotFound"


async def test_without_a_master_secret_post_is_503_and_get_and_delete_still_work(gw: Gateway) -> None:
    assert gw.app.state.settings.signing_master_key_file is None
    response = await gw.http.post("/projects/p/signing-keys", json={"label": "x"}, headers=key("project"))
    assert response.status_code == 503 and code_of(response) == "ServiceUnavailable", response.text
    assert "CLOUDWALLET_SIGNING_MASTER_KEY_FILE" in response.json()["error"]["message"]
    assert "retry-after" not in response.headers  # retrying does not help: the operator must act
    assert gw.signing_keys.rows == {}

    # Keys made elsewhere (the CLI) are still listed and revoked.
    made = gw.signing_keys.create(master=MASTER, project_id="p", label="cli")
    listed = await gw.http.get("/projects/p/signing-keys", headers=key("project"))
    assert listed.status_code == 200 and [item["key_id"] for item in listed.json()["items"]] == [made.row.key_id]
    revoked = await gw.http.delete(f"/projects/p/signing-keys/{made.row.key_id}", headers=key("project"))
    assert revoked.status_code == 200 and revoked.json()["key_id"] == made.row.key_id


async def test_an_unreadable_master_secret_is_503_without_its_path(tmp_path: Path) -> None:
    async with fake_gateway(FakeApp.build(SETTINGS.model_copy(update={"signing_master_key_file": tmp_path / "missing"}))) as gw:
        response = await gw.http.post("/projects/p/signing-keys", json={}, headers=key("operator"))
    assert response.status_code == 503 and code_of(response) == "ServiceUnavailable", response.text
    assert "CLOUDWALLET_SIGNING_MASTER_KEY_FILE" in response.text and str(tmp_path) not in response.text
