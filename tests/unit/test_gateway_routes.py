"""The gateway's routes, one by one, through FastAPI's TestClient: no Kafka, no PostgreSQL.

The app is `create_app(settings, client=..., backends=...)` with in-memory fakes: `MemoryReads`
holds one project's data, `ScriptedPublisher` answers each published request as the test says
(Completed, Failed, no result in time, Kafka down) and remembers what was published. Covered:
what each kind of route reads and answers (200, 404 and which 404), how a write becomes one
contract request (IDs from the path, fields from the body, the reference ID from the body or
the Idempotency-Key header) and how its result becomes an HTTP answer (201 with a Location,
409, 202, 503); the OpenAPI document's camelCase path parameters; the gateway's imports.
(tests/unit/test_gateway_http.py covers the body limit, the error codes and the order of checks.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi.testclient import TestClient

from processor.client import ResultTimeout
from processor.gateway.application import create_app
from processor.gateway.backends import Backends
from processor.gateway.bodies import Page
from processor.gateway.gateway_settings import GatewaySettings
from processor.gateway.api_keys import KeyKind, Principal
from processor.gateway.reads import MetadataFilter, Paging, Period
from processor.signing_keys import CreatedSigningKey
from schemas.errors import ErrorCode
from schemas.requests import RequestModel, request_project_id
from schemas.results import AssetView, CustomerView, ErrorInfo, ProjectView, Result, Status, TransactionView, WalletView

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = {
    "operator": Principal(key_id="k-op", kind=KeyKind.operator),
    "project": Principal(key_id="k-p", kind=KeyKind.project, project_id="p"),
    "customer": Principal(key_id="k-c", kind=KeyKind.customer, project_id="p", customer_id="carol"),
}

# --- fakes -----------------------------------------------------------------------------------


class TokenKeys:
    """API keys: the token is the principal's name in KEYS."""

    def lookup(self, token: str) -> Principal | None:
        return KEYS.get(token)


def _wallet(wallet_id: str, customer_id: str | None) -> WalletView:
    return WalletView(
        project_id="p", wallet_id=wallet_id, asset_id="usd", customer_id=customer_id, name="", description="", status="Open", balance="1.00", created_at=NOW
    )


def _transaction(transaction_id: str, reference_id: str) -> TransactionView:
    return TransactionView(
        project_id="p", transaction_id=transaction_id, reference_id=reference_id, description="", status=Status.Completed, operations=[], entries=[], created_at=NOW
    )


def _page(items: list[Any], paging: Paging) -> Page:
    chosen = items[paging.offset : paging.offset + paging.page_size + 1]
    return Page(items=chosen[: paging.page_size], page=paging.page, page_size=paging.page_size, has_more=len(chosen) > paging.page_size)


@dataclass
class MemoryReads:
    """Project `p` (asset usd, customer carol with wallet carol-w, system wallet sys, one
    transaction, one stored result) and an empty project `empty`; every call is remembered."""

    projects: dict[str, ProjectView] = field(
        default_factory=lambda: {p: ProjectView(project_id=p, name=p.upper(), created_at=NOW, assets=[]) for p in ("p", "empty")}
    )
    assets: dict[str, AssetView] = field(
        default_factory=lambda: {"usd": AssetView(project_id="p", asset_id="usd", code="USD", name="Dollar", fractions=100, in_use=True)}
    )
    customers: dict[str, CustomerView] = field(
        default_factory=lambda: {"carol": CustomerView(project_id="p", customer_id="carol", name="Carol", description="", status="Active")}
    )
    wallets: dict[str, WalletView] = field(default_factory=lambda: {"carol-w": _wallet("carol-w", "carol"), "sys": _wallet("sys", None)})
    transactions: dict[str, TransactionView] = field(default_factory=lambda: {"tx-1": _transaction("tx-1", "order-1")})
    results: dict[str, Result] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _in(self, project_id: str, table: dict[str, Any], key: str) -> Any:
        return table.get(key) if project_id == "p" else None

    def project_exists(self, project_id: str) -> bool:
        return project_id in self.projects

    def get_project(self, project_id: str) -> ProjectView | None:
        return self.projects.get(project_id)

    def list_projects(self, paging: Paging, *, only: str | None = None) -> Page:
        self.calls.append(("list_projects", only))
        return _page([v for k, v in sorted(self.projects.items()) if only in (None, k)], paging)

    def list_assets(self, project_id: str, paging: Paging) -> Page:
        self.calls.append(("list_assets", paging))
        return _page(list(self.assets.values()) if project_id == "p" else [], paging)

    def get_asset(self, project_id: str, asset_id: str) -> AssetView | None:
        return self._in(project_id, self.assets, asset_id)

    def list_customers(self, project_id: str, paging: Paging) -> Page:
        return _page(list(self.customers.values()) if project_id == "p" else [], paging)

    def get_customer(self, project_id: str, customer_id: str) -> CustomerView | None:
        return self._in(project_id, self.customers, customer_id)

    def get_wallet(self, project_id: str, wallet_id: str) -> WalletView | None:
        return self._in(project_id, self.wallets, wallet_id)

    def list_wallets(self, project_id: str, *, customer_id: str | None, paging: Paging) -> Page:
        found = [w for w in self.wallets.values() if w.customer_id == customer_id] if project_id == "p" else []
        return _page(found, paging)

    def wallet_entries(
        self, project_id: str, wallet_id: str, *, fractions: int, period: Period, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page:
        self.calls.append(("wallet_entries", (wallet_id, fractions, period, metadata)))
        return _page([], paging)

    def balance_before(self, project_id: str, wallet_id: str, *, instant: datetime, inclusive: bool) -> tuple[int, int]:
        """12.34 at NOW and after (2.00 of it held), 0 before: one Issue and one Hold at NOW."""
        self.calls.append(("balance_before", (wallet_id, instant, inclusive)))
        return (1234, 1034) if instant > NOW or (inclusive and instant == NOW) else (0, 0)

    def list_transactions(
        self, project_id: str, *, period: Period, reference_id: str | None, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page:
        self.calls.append(("list_transactions", (period, reference_id, metadata)))
        found = [t for t in self.transactions.values() if reference_id in (None, t.reference_id)] if project_id == "p" else []
        return _page(found, paging)

    def get_transaction(self, project_id: str, transaction_id: str) -> TransactionView | None:
        return self._in(project_id, self.transactions, transaction_id)

    def get_result(self, project_id: str, reference_id: str) -> Result | None:
        return self._in(project_id, self.results, reference_id)


class NoSigningKeys:
    """The signing-key routes are test_gateway_http.py's: here any use is a mistake."""

    def create(self, *, master: bytes, project_id: str, label: str | None) -> CreatedSigningKey:
        raise AssertionError("not used here")

    def list(self, project_id: str, paging: Paging) -> Page:
        raise AssertionError("not used here")

    def revoke(self, project_id: str, key_id: str) -> datetime | None:
        raise AssertionError("not used here")


def completed(model: RequestModel, **views: Any) -> Result:
    return Result(reference_id=model.reference_id, project_id=request_project_id(model), type=model.type, status=Status.Completed, processed_at=NOW, **views)


@dataclass
class ScriptedPublisher:
    """Answers each request with `answer(model)` (Completed by default) or raises `fail_with`."""

    answer: Callable[[RequestModel], Result] = completed
    fail_with: Exception | None = None
    submitted: list[RequestModel] = field(default_factory=list)

    async def submit(self, request: RequestModel, *, timeout: float) -> Result:
        self.submitted.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return self.answer(request)


@dataclass
class Gateway:
    http: TestClient
    reads: MemoryReads
    kafka: ScriptedPublisher

    def call(self, method: str, path: str, *, key: str = "operator", **kwargs: Any) -> Any:
        return self.http.request(method, path, headers={"X-Api-Key": key, **kwargs.pop("headers", {})}, **kwargs)

    @property
    def published(self) -> dict[str, Any]:
        """The one request published, as the processor would read it."""
        (model,) = self.kafka.submitted
        return model.model_dump(mode="json", exclude_none=True)


@pytest.fixture
def gw() -> Iterator[Gateway]:
    reads, kafka = MemoryReads(), ScriptedPublisher()
    settings = GatewaySettings.model_construct(max_body_bytes=1_048_576, result_wait_seconds=0.1)
    app = create_app(settings, client=kafka, backends=Backends(reads=reads, keys=TokenKeys(), signing_keys=NoSigningKeys()))
    # As a context manager the lifespan runs: given backends and client, it opens nothing.
    with TestClient(app, raise_server_exceptions=False) as http:
        yield Gateway(http=http, reads=reads, kafka=kafka)


def error_of(response: Any) -> tuple[int, str, list[str]]:
    error = response.json()["error"]
    return response.status_code, error["code"], [item["field"] for item in error["fields"]]


# --- reads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/projects/p", 200, None),
        ("/projects/nope", 404, "ProjectNotFound"),
        ("/projects/p/currencies/usd", 200, None),
        ("/projects/p/currencies/eur", 404, "AssetNotFound"),
        ("/projects/nope/currencies/usd", 404, "ProjectNotFound"),
        ("/projects/p/customers/carol", 200, None),
        ("/projects/p/customers/dave", 404, "CustomerNotFound"),
        ("/projects/p/wallets/carol-w", 200, None),
        ("/projects/p/wallets/nope", 404, "WalletNotFound"),
        ("/projects/nope/wallets/carol-w", 404, "ProjectNotFound"),
        ("/projects/p/transactions/tx-1", 200, None),
        ("/projects/p/transactions/tx-2", 404, "TransactionNotFound"),
        ("/projects/p/requests/order-9", 404, "RequestNotFound"),
        ("/projects/nope/requests/order-9", 404, "ProjectNotFound"),
        ("/projects/p/customers/dave/wallets", 404, "CustomerNotFound"),
        ("/projects/p/customers/dave/wallets?page=2", 200, None),  # past the end: an empty page, no lookup
    ],
)
def test_a_read_answers_the_thing_or_says_which_is_missing(gw: Gateway, path: str, status: int, code: str | None) -> None:
    response = gw.call("GET", path)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code


def test_a_not_found_names_what_was_asked_for(gw: Gateway) -> None:
    assert gw.call("GET", "/projects/p/currencies/eur").json()["error"]["message"] == "no asset 'eur' in project 'p'"
    assert gw.call("GET", "/projects/p/requests/r-1").json()["error"]["message"] == "no result for reference 'r-1' in project 'p' (yet)"


@pytest.mark.parametrize("path", ["assets", "customers", "system-wallets", "transactions"])
def test_a_list_is_an_empty_page_in_an_empty_project_and_404_without_one(gw: Gateway, path: str) -> None:
    empty = gw.call("GET", f"/projects/empty/{path}")
    assert empty.status_code == 200 and empty.json() == {"items": [], "page": 1, "page_size": 50, "has_more": False}
    assert error_of(gw.call("GET", f"/projects/nope/{path}"))[:2] == (404, "ProjectNotFound")


def test_paging_reaches_the_read(gw: Gateway) -> None:
    page = gw.call("GET", "/projects/p/assets?page=2&page_size=7").json()
    assert (page["page"], page["page_size"], page["items"]) == (2, 7, [])
    assert gw.reads.calls == [("list_assets", Paging(page=2, page_size=7))]
    assert error_of(gw.call("GET", "/projects/p/assets?page_size=501")) == (422, "ValidationError", ["query.page_size"])


def test_an_operator_lists_every_project_and_a_project_key_its_own(gw: Gateway) -> None:
    assert [p["project_id"] for p in gw.call("GET", "/projects").json()["items"]] == ["empty", "p"]
    assert [p["project_id"] for p in gw.call("GET", "/projects", key="project").json()["items"]] == ["p"]
    assert [call[1] for call in gw.reads.calls] == [None, "p"]


def test_a_period_without_an_offset_is_utc_and_must_not_end_before_it_starts(gw: Gateway) -> None:
    listed = gw.call("GET", "/projects/p/transactions", params={"from": "2026-01-01T00:00:00", "to": "2026-02-01T00:00:00+01:00", "reference_id": "order-1"})
    assert listed.status_code == 200 and [t["transaction_id"] for t in listed.json()["items"]] == ["tx-1"]
    period, reference_id, _ = gw.reads.calls[-1][1]
    assert period.start == datetime(2026, 1, 1, tzinfo=UTC) and period.end.utcoffset().total_seconds() == 3600 and reference_id == "order-1"
    backwards = {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    for path in ("/projects/p/transactions", "/projects/p/wallets/carol-w/entries"):
        assert error_of(gw.call("GET", path, params=backwards)) == (422, "ValidationError", ["query.from"])


def test_wallet_entries_are_read_in_the_wallets_asset_scale(gw: Gateway) -> None:
    assert gw.call("GET", "/projects/p/wallets/carol-w/entries").status_code == 200
    assert gw.reads.calls == [("wallet_entries", ("carol-w", 100, Period(), None))]


def test_one_metadata_filter_reaches_the_transactions_and_entries_reads(gw: Gateway) -> None:
    listed = gw.call("GET", "/projects/p/transactions", params={"metadata.order": "123", "page_size": 5})
    assert listed.status_code == 200, listed.text
    assert gw.reads.calls[-1] == ("list_transactions", (Period(), None, MetadataFilter(key="order", value="123")))
    dotted = gw.call("GET", "/projects/p/wallets/carol-w/entries", params={"metadata.shop.region": "eu:west", "from": "2026-01-01T00:00:00Z"})
    assert dotted.status_code == 200, dotted.text
    assert gw.reads.calls[-1] == ("wallet_entries", ("carol-w", 100, Period(start=NOW), MetadataFilter(key="shop.region", value="eu:west")))
    assert gw.call("GET", "/projects/p/transactions", params={"metadata.empty": ""}).status_code == 200  # an empty value is a value


@pytest.mark.parametrize("path", ["/projects/p/transactions", "/projects/p/wallets/carol-w/entries"])
def test_a_second_metadata_filter_or_one_beyond_the_limits_is_refused_naming_the_parameter(gw: Gateway, path: str) -> None:
    two = gw.call("GET", f"{path}?metadata.order=1&metadata.shop=2")
    assert error_of(two) == (422, "ValidationError", ["query.metadata.shop"]) and "only one" in two.json()["error"]["message"]
    assert error_of(gw.call("GET", f"{path}?metadata.order=1&metadata.order=2")) == (422, "ValidationError", ["query.metadata.order"])
    for query, named in (
        ("metadata.=1", "query.metadata."),  # an empty key
        ("metadata.a%20b=1", "query.metadata.a b"),  # outside [A-Za-z0-9_.:-]
        ("metadata." + "k" * 65 + "=1", "query.metadata." + "k" * 64 + "…"),  # too long: cut where it is named
        ("metadata.order=" + "v" * 257, "query.metadata.order"),
        ("metadata.order=a%00b", "query.metadata.order"),  # NUL: PostgreSQL could not hold it
    ):
        assert error_of(gw.call("GET", f"{path}?{query}")) == (422, "ValidationError", [named]), query
    assert not [c for c in gw.reads.calls if c[0] in ("list_transactions", "wallet_entries")]  # refused before any read
    assert gw.call("GET", f"{path}?metadata.{'k' * 64}={'v' * 256}").status_code == 200  # at the limits


def test_a_balance_at_an_instant_comes_from_the_last_entry_at_or_before_it(gw: Gateway) -> None:
    at = gw.call("GET", "/projects/p/wallets/carol-w/balance", params={"at": "2026-01-01T00:00:00"})  # no offset: UTC, = NOW
    assert at.status_code == 200, at.text
    assert {k: at.json()[k] for k in ("balance", "held", "available", "asset_id")} == {"balance": "12.34", "held": "2.00", "available": "10.34", "asset_id": "usd"}
    assert gw.reads.calls[-1] == ("balance_before", ("carol-w", NOW, True))
    now = gw.call("GET", "/projects/p/wallets/carol-w/balance").json()  # default: now (after NOW)
    assert now["balance"] == "12.34" and datetime.fromisoformat(now["at"]) > NOW
    future = gw.call("GET", "/projects/p/wallets/carol-w/balance", params={"at": "2999-01-01T00:00:00Z"}).json()
    assert datetime.fromisoformat(future["at"]).year < 2999  # nothing is known of the future: as of now
    before = gw.call("GET", "/projects/p/wallets/carol-w/balance", params={"at": "2025-12-31T23:59:59Z"})
    assert error_of(before)[:2] == (404, "WalletNotFound") and "did not exist" in before.json()["error"]["message"]
    assert error_of(gw.call("GET", "/projects/p/wallets/nope/balance"))[:2] == (404, "WalletNotFound")
    assert error_of(gw.call("GET", "/projects/p/wallets/carol-w/balance", params={"at": "soon"})) == (422, "ValidationError", ["query.at"])
    assert error_of(gw.call("GET", "/projects/p/wallets/sys/balance", key="customer"))[:2] == (403, "Forbidden")


def test_a_statement_needs_both_ends_and_gives_the_balance_at_each(gw: Gateway) -> None:
    params = {"from": "2025-12-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "page_size": 10}
    statement = gw.call("GET", "/projects/p/wallets/carol-w/statement", params=params)
    assert statement.status_code == 200, statement.text
    body = statement.json()
    assert (body["opening_balance"], body["closing_balance"]) == ("0.00", "12.34")
    assert body["entries"]["page_size"] == 10 and body["entries"]["items"] == []
    calls = [c for c in gw.reads.calls if c[0] in ("balance_before", "wallet_entries")]
    assert calls[0] == ("balance_before", ("carol-w", datetime(2025, 12, 1, tzinfo=UTC), False))  # before `from`: not inclusive
    assert calls[-1] == ("wallet_entries", ("carol-w", 100, Period(start=datetime(2025, 12, 1, tzinfo=UTC), end=datetime(2026, 2, 1, tzinfo=UTC)), None))
    for missing, named in (({"to": "2026-02-01T00:00:00Z"}, "query.from"), ({"from": "2025-12-01T00:00:00Z"}, "query.to")):
        assert error_of(gw.call("GET", "/projects/p/wallets/carol-w/statement", params=missing)) == (422, "ValidationError", [named])


def test_a_customer_key_reads_its_own_wallets_only(gw: Gateway) -> None:
    assert gw.call("GET", "/projects/p/wallets/carol-w", key="customer").json()["wallet_id"] == "carol-w"
    assert gw.call("GET", "/projects/p/customers/carol/wallets", key="customer").json()["items"][0]["wallet_id"] == "carol-w"
    for path in ("/projects/p/wallets/sys", "/projects/p/customers/dave/wallets", "/projects/p/assets"):
        assert error_of(gw.call("GET", path, key="customer"))[:2] == (403, "Forbidden")


def test_a_stored_result_is_answered_without_its_null_fields(gw: Gateway) -> None:
    gw.reads.results["a/b"] = Result(reference_id="a/b", project_id="p", type="asset.delete", status=Status.Completed, processed_at=NOW)
    response = gw.call("GET", "/projects/p/requests/a/b")  # a reference ID may hold a '/'
    assert response.status_code == 200 and set(response.json()) == {"reference_id", "project_id", "type", "status", "processed_at"}


# --- writes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "published"),
    [
        ("PUT", "/projects/p/name", {"name": "P"}, {"type": "project.rename", "project_id": "p", "name": "P"}),
        ("PUT", "/projects/p/wallets/w1/name", {"name": "N"}, {"type": "wallet.rename", "project_id": "p", "wallet_id": "w1", "name": "N"}),
        ("PUT", "/projects/p/wallets/w1/description", {"description": "D"}, {"type": "wallet.set_description", "wallet_id": "w1", "description": "D"}),
        ("PUT", "/projects/p/wallets/w1/status", {"status": "Suspended"}, {"type": "wallet.set_status", "wallet_id": "w1", "status": "Suspended"}),
        ("PUT", "/projects/p/currencies/usd/name", {"name": "US"}, {"type": "asset.rename", "asset_id": "usd", "name": "US"}),
        ("DELETE", "/projects/p/currencies/usd", None, {"type": "asset.delete", "project_id": "p", "asset_id": "usd"}),
        ("PUT", "/projects/p/customers/c%40x", {"name": "C"}, {"type": "customer.upsert", "customer_id": "c@x", "name": "C"}),
        ("POST", "/projects/p/customers", {"customer_id": "c"}, {"type": "customer.upsert", "project_id": "p", "customer_id": "c"}),
        ("PUT", "/projects/p/customers/c/suspend", None, {"type": "customer.suspend", "customer_id": "c"}),
        ("PUT", "/projects/p/customers/c/resume", {}, {"type": "customer.resume", "customer_id": "c"}),
        ("DELETE", "/projects/p/customers/c", None, {"type": "customer.delete", "customer_id": "c"}),
    ],
)
def test_a_write_publishes_one_request_made_of_the_path_and_the_body(
    gw: Gateway, method: str, path: str, body: Any, published: dict[str, Any]
) -> None:
    response = gw.call(method, path, json=body)
    assert response.status_code == 200 and response.json()["status"] == "Completed", response.text
    assert "location" not in response.headers
    request = gw.published
    assert published.items() <= request.items() and request["project_id"] == "p"
    assert re.fullmatch(r"[0-9a-f-]{36}", request["reference_id"])  # none given: a UUID


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/projects", {"project_id": "shop", "name": "Shop"}, "/projects/shop"),
        ("/projects/p/assets", {"asset_id": "eur", "code": "EUR", "name": "Euro"}, "/projects/p/currencies/eur"),
        ("/projects/p/wallets", {"customer_id": "carol", "asset_id": "usd", "wallet_id": "w@2"}, "/projects/p/wallets/w%402"),
        ("/projects/p/system-wallets", {"asset_id": "usd", "wallet_id": "fees"}, "/projects/p/wallets/fees"),
        ("/projects/p/transactions", {"reference_id": "t-1", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}]}, "/projects/p/transactions/tx-9"),
    ],
)
def test_a_completed_create_is_201_with_the_location_of_what_it_made(gw: Gateway, path: str, body: dict[str, Any], location: str) -> None:
    def made(model: RequestModel) -> Result:
        what = model.model_dump()
        views = {
            "project.create": lambda: {"project": ProjectView(project_id=what["project_id"], name="Shop", created_at=NOW)},
            "asset.create": lambda: {"asset": AssetView(project_id="p", asset_id=what["asset_id"], code="EUR", name="Euro", fractions=100, in_use=False)},
            "wallet.open": lambda: {"wallet": _wallet(what["wallet_id"], "carol")},
            "system_wallet.open": lambda: {"wallet": _wallet(what["wallet_id"], None)},
            "transaction.run": lambda: {"transaction": _transaction("tx-9", model.reference_id)},
        }
        return completed(model, **views[model.type]())

    gw.kafka.answer = made
    response = gw.call("POST", path, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("method", "path", "body", "published"),
    [
        ("PUT", "/projects/p/wallets/w1/name", {"name": "N", "metadata": {"a": "1"}}, {"type": "wallet.rename", "metadata": {"a": "1"}}),
        ("PUT", "/projects/p/customers/c", {"metadata": {}}, {"type": "customer.upsert", "metadata": {}}),  # {} clears: it is not left out
        ("POST", "/projects/p/customers", {"customer_id": "c", "metadata": {"crm": "7"}}, {"type": "customer.upsert", "metadata": {"crm": "7"}}),
        ("POST", "/projects/p/wallets", {"customer_id": "c", "asset_id": "usd", "metadata": {"k": "v"}}, {"type": "wallet.open", "metadata": {"k": "v"}}),
        ("POST", "/projects/p/system-wallets", {"asset_id": "usd", "metadata": {"k": "v"}}, {"type": "system_wallet.open", "metadata": {"k": "v"}}),
        ("POST", "/projects/p/holds", {"wallet_id": "w", "amount": "1", "metadata": {"order": "9"}}, {"type": "hold.create", "metadata": {"order": "9"}}),
        (
            "POST", "/projects/p/transactions", {"reference_id": "t", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}], "metadata": {"order": "9"}},
            {"type": "transaction.run", "metadata": {"order": "9"}},
        ),
        (
            "POST", "/projects/p/transactions/00000000-0000-5000-8000-000000000000/reversal", {"metadata": {"refund": "r"}},
            {"type": "transaction.reverse", "metadata": {"refund": "r"}},
        ),
    ],
)
def test_metadata_in_a_body_is_published_as_sent(gw: Gateway, method: str, path: str, body: dict[str, Any], published: dict[str, Any]) -> None:
    response = gw.call(method, path, json=body)
    assert response.status_code in (200, 201), response.text
    assert published.items() <= gw.published.items()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/projects/p/holds/h1/void", {"metadata": {"a": "1"}}, "body.metadata"),  # a void has none: extra fields are refused
        ("/projects/p/holds/h1/capture", {"metadata": {"a": "1"}}, "body.metadata"),
        ("/projects/p/holds", {"wallet_id": "w", "amount": "1", "metadata": {f"k{n}": "" for n in range(17)}}, "body.metadata"),
        ("/projects/p/holds", {"wallet_id": "w", "amount": "1", "metadata": {"a b": "1"}}, "body.metadata.a b.[key]"),
        ("/projects/p/holds", {"wallet_id": "w", "amount": "1", "metadata": {"a": 1}}, "body.metadata.a"),  # values are strings
    ],
)
def test_metadata_a_request_does_not_take_or_beyond_the_limits_is_422(gw: Gateway, path: str, body: dict[str, Any], field: str) -> None:
    assert error_of(gw.call("POST", path, json=body)) == (422, "ValidationError", [field])
    assert gw.kafka.submitted == []


def test_the_reference_id_comes_from_the_body_or_the_idempotency_key_and_they_must_agree(gw: Gateway) -> None:
    assert gw.call("DELETE", "/projects/p/customers/c", headers={"Idempotency-Key": "k-1"}).status_code == 200
    assert gw.published["reference_id"] == "k-1"
    gw.kafka.submitted.clear()
    same = gw.call("PUT", "/projects/p/customers/c/suspend", json={"reference_id": "k-2"}, headers={"Idempotency-Key": "k-2"})
    assert same.status_code == 200 and gw.published["reference_id"] == "k-2"
    gw.kafka.submitted.clear()
    differ = gw.call("PUT", "/projects/p/name", json={"name": "P", "reference_id": "a"}, headers={"Idempotency-Key": "b"})
    assert error_of(differ) == (422, "ValidationError", ["header.Idempotency-Key"])
    assert gw.kafka.submitted == []


@pytest.mark.parametrize(
    ("method", "path", "body", "fields"),
    [
        ("PUT", "/projects/p/customers/%20%20", {}, ["path.customerId"]),  # the contract's CustomerId: not only whitespace
        ("POST", "/projects/p/wallets", {"customer_id": "  ", "asset_id": "usd"}, ["body.customer_id"]),
        ("PUT", "/projects/p/wallets/w1/name", {"name": "a\x00b"}, ["body.name"]),  # the contract's Name: no NUL
        ("PUT", "/projects/p/customers/c", {"reference_id": "\x01"}, ["body.reference_id"]),
        ("DELETE", "/projects/p/customers/c", None, ["header.Idempotency-Key"]),
    ],
)
def test_input_the_contract_refuses_is_422_naming_where_it_was_sent(
    gw: Gateway, method: str, path: str, body: Any, fields: list[str]
) -> None:
    headers = {"Idempotency-Key": "x" * 129} if fields == ["header.Idempotency-Key"] else {}
    response = gw.call(method, path, json=body, headers=headers)
    assert error_of(response) == (422, "ValidationError", fields), response.text
    assert gw.kafka.submitted == []


def test_a_failed_result_is_answered_whole_with_its_codes_status(gw: Gateway) -> None:
    def overdrawn(model: RequestModel) -> Result:
        error = ErrorInfo(code=ErrorCode.InsufficientFunds, message="not enough", operation_index=0)
        return completed(model).model_copy(update={"status": Status.Failed, "error": error})

    gw.kafka.answer = overdrawn
    body = {"reference_id": "t-2", "operations": [{"type": "Redeem", "wallet_id": "w", "amount": "5"}]}
    response = gw.call("POST", "/projects/p/transactions", json=body)
    assert response.status_code == 409 and "location" not in response.headers
    assert response.json()["error"] == {"code": "InsufficientFunds", "message": "not enough", "operation_index": 0}


def test_no_result_in_time_is_202_with_where_to_poll(gw: Gateway) -> None:
    gw.kafka.fail_with = ResultTimeout()
    response = gw.call("PUT", "/projects/p/wallets/w1/name", json={"name": "N", "reference_id": "r/1"})
    assert response.status_code == 202 and response.headers["location"] == "/projects/p/requests/r%2F1"
    assert response.json() == {"reference_id": "r/1", "project_id": "p", "type": "wallet.rename", "status": "Pending", "location": "/projects/p/requests/r%2F1"}


def test_kafka_down_is_503_retry_with_the_same_reference(gw: Gateway) -> None:
    gw.kafka.fail_with = KafkaConnectionError("no broker")
    response = gw.call("PUT", "/projects/p/wallets/w1/name", json={"name": "N", "reference_id": "r-7"})
    assert error_of(response)[:2] == (503, "ServiceUnavailable") and response.headers["retry-after"] == "1"
    assert "r-7" in response.json()["error"]["message"]


def test_only_an_operator_creates_projects(gw: Gateway) -> None:
    assert error_of(gw.call("POST", "/projects", key="project", json={"name": "X"}))[:2] == (403, "Forbidden")
    assert gw.kafka.submitted == []


# --- the document and the package --------------------------------------------------------------


def test_openapi_names_path_parameters_as_the_url_does(gw: Gateway) -> None:
    document = gw.http.get("/openapi.json").json()
    operations = [(path, operation) for path, item in document["paths"].items() for operation in item.values()]
    assert len(operations) == 40
    for path, operation in operations:
        in_path = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path)), (path, in_path)
        assert not any("_" in name for name in in_path)


def _imports(package: Path) -> Iterator[tuple[Path, str]]:
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module
            elif isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)


def test_the_gateway_imports_none_of_the_processors_insides() -> None:
    forbidden = ("processor.ledger", "processor.service", "processor.stream")
    found = [(path.name, name) for path, name in _imports(ROOT / "processor" / "gateway") if name.startswith(forbidden)]
    assert found == []


def test_no_gateway_route_needs_a_noqa() -> None:
    for path in (ROOT / "processor" / "gateway").rglob("*.py"):
        assert "noqa" not in path.read_text(encoding="utf-8"), path


def test_every_path_parameter_of_a_write_is_named_in_its_errors() -> None:
    """A write joins its path's IDs to the body (dependencies.Writer.request); each needs the name
    its errors give it, or the write fails with a 500 instead of a 422 (the holds routes did)."""
    import re

    from processor.gateway.dependencies import _PATH_FIELDS
    from processor.gateway.routes import ROUTERS

    named = {value.removeprefix("path.") for value in _PATH_FIELDS.values()}
    in_writes = {
        parameter
        for router in ROUTERS
        for route in router.routes
        if getattr(route, "methods", set()) & {"POST", "PUT", "PATCH", "DELETE"}
        for parameter in re.findall(r"{(\w+)}", route.path)  # type: ignore[attr-defined]
    }
    assert in_writes - {"keyId"} <= named, in_writes - named  # keyId: signing keys are no contract request
