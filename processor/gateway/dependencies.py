"""What every route shares, in one place: its parameters, its reach, its stores, paging, the
"exists, or 404" rules and the write step (publish one contract request, wait for its result).

A route module imports from here and from bodies.py, and a route handler is then a few lines:
it declares its path parameters (`ProjectIdPath`, ...; camelCase in the URL, snake_case in
Python), its reach (`principal: Member`, ...; access.py checks it before the request is read),
what it needs (`db: ReadsDep`, `paging: PagingDep`, `write: Write`) and calls one of them.

Writes: `write(type, path=..., body=...)` builds the contract request (schemas.requests) from the
path's IDs and the body, takes the reference ID from the body or the `Idempotency-Key` header,
validates it as the processor would (422 naming the field where the client sent it), publishes
it keyed by `partition_key` and waits up to `result_wait_seconds` for its result: Completed ->
200/201 with the result, Failed -> 4xx with the result, no result in time -> 202 with a Location
to poll, Kafka unreachable -> 503. See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from aiokafka.errors import KafkaError
from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from processor.client import ResultTimeout
from processor.gateway.access import Member, Operator, Staff, WalletReader
from processor.gateway.backends import Publisher, ReadStore, SigningKeyStorePort
from processor.gateway.bodies import Page, Pending
from processor.gateway.request_metrics import RESULT_WAIT_SECONDS
from processor.gateway.http_errors import STATUS_BY_CODE, ErrorBody, GatewayCode, GatewayError, field_errors, invalid, not_found, validation_error
from processor.gateway.gateway_settings import GatewaySettings
from processor.gateway.reads import MetadataFilter, Paging, Period
from schemas.limits import ID_PATTERN, MAX_METADATA_KEY_LEN, MAX_REFERENCE_ID_LEN
from schemas.requests import REQUEST_TYPES, AssetId, CustomerId, HoldId, Metadata, ProjectId, ReferenceId, RequestModel, WalletId, request_project_id
from schemas.results import Result, Status

log = logging.getLogger("gateway")

__all__ = [
    # reaches: a route declares one with its `principal` parameter (access.py checks it first)
    "Member",
    "Operator",
    "Staff",
    "WalletReader",
    # parameters
    "AssetIdPath",
    "CustomerIdPath",
    "FromQuery",
    "IdempotencyKey",
    "PagingDep",
    "ProjectIdPath",
    "ReferenceIdPath",
    "ReferenceIdQuery",
    "SigningKeyIdPath",
    "ToQuery",
    "TransactionIdPath",
    "HoldIdPath",
    "WalletIdPath",
    "as_utc",
    "metadata_filter",
    "period",
    # stores and existence
    "ReadsDep",
    "SettingsDep",
    "SigningKeysDep",
    "found_in_project",
    "page_in_project",
    "require_project",
    # OpenAPI responses
    "AUTH_RESPONSES",
    "READ_RESPONSES",
    "WRITE_RESPONSES",
    # writes
    "Write",
    "Writer",
    "result_body",
]

T = TypeVar("T")

MAX_PAGE = 100_000
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
# How much longer than the result wait a write may take to be published (a broker that does not answer).
PUBLISH_GRACE_SECONDS = 10.0

# --- parameters ----------------------------------------------------------------------------
# Path parameters keep the seed's camelCase names in the URL and in OpenAPI (the alias). The IDs
# a request carries are the contract's own types, so a path refuses what the processor would.

ProjectIdPath = Annotated[ProjectId, Path(alias="projectId", description="project ID")]
WalletIdPath = Annotated[WalletId, Path(alias="walletId", description="wallet ID")]
AssetIdPath = Annotated[AssetId, Path(alias="assetId", description="asset ID")]
CustomerIdPath = Annotated[
    CustomerId,
    Path(
        alias="customerId",
        description="the client's own customer ID: printable, not only whitespace (IDs containing '/' cannot be addressed in a path)",
    ),
]
TransactionIdPath = Annotated[str, Path(alias="txId", min_length=1, max_length=64, pattern=ID_PATTERN, description="transaction ID")]
ReferenceIdPath = Annotated[ReferenceId, Path(alias="referenceId", description="reference ID")]
HoldIdPath = Annotated[HoldId, Path(alias="holdId", description="hold ID")]
SigningKeyIdPath = Annotated[str, Path(alias="keyId", pattern=r"^[0-9a-f]{16}$", description="signing key ID (16 hex digits)")]
FromQuery = Annotated[datetime | None, Query(alias="from", description="ISO 8601; inclusive; without an offset it is UTC")]
ToQuery = Annotated[datetime | None, Query(alias="to", description="ISO 8601; exclusive; without an offset it is UTC")]
ReferenceIdQuery = Annotated[ReferenceId | None, Query(description="only the transaction with this reference ID (0 or 1 items)")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_REFERENCE_ID_LEN,
        description="the request's reference ID (idempotency key), if the body does not carry reference_id",
    ),
]

# Where each request field comes from when a path gives it, for error messages.
_PATH_FIELDS = {
    "project_id": "path.projectId", "wallet_id": "path.walletId", "asset_id": "path.assetId", "customer_id": "path.customerId", "transaction_id": "path.txId",
    "hold_id": "path.holdId",
}


async def paging(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page (at most {MAX_PAGE_SIZE})")] = DEFAULT_PAGE_SIZE,
) -> Paging:
    """`page` and `page_size` of every list."""
    return Paging(page=page, page_size=page_size)


PagingDep = Annotated[Paging, Depends(paging)]


def as_utc(instant: datetime) -> datetime:
    """An instant from a query: one without an offset is UTC."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant


def period(start: datetime | None, end: datetime | None) -> Period:
    """`from`/`to` as a period: a time without an offset is UTC; `from` after `to` is 422.

    Called by the route once its parameters are valid (not a dependency: a dependency's error
    would come before the route's own 422s)."""
    start = as_utc(start) if start is not None else None
    end = as_utc(end) if end is not None else None
    if start is not None and end is not None and start > end:
        raise invalid("query.from", "must not be after query.to")
    return Period(start=start, end=end)


METADATA_PREFIX = "metadata."
_METADATA: TypeAdapter[dict[str, str]] = TypeAdapter(Metadata)


def metadata_filter(request: Request) -> MetadataFilter | None:
    """The one `metadata.<key>=<value>` query parameter of a list, if any; 422 naming the
    parameter when there are several, or when its key or value breaks the contract's limits.

    Its name is the client's key, so FastAPI cannot declare it: the route calls this once its
    declared parameters are valid (as `period`)."""
    given = [(name, value) for name, value in request.query_params.multi_items() if name.startswith(METADATA_PREFIX)]
    if not given:
        return None
    (name, value), *others = given
    if others:
        raise invalid(f"query.{_shown(others[0][0])}", f"only one metadata filter is allowed (also given: {_shown(name)})")
    key = name.removeprefix(METADATA_PREFIX)
    try:
        _METADATA.validate_python({key: value})
    except ValidationError as error:
        raise invalid(f"query.{_shown(name)}", str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    return MetadataFilter(key=key, value=value)


def _shown(name: str) -> str:
    """A parameter name as an error names it: a key past the limit is cut (it is the client's text)."""
    limit = len(METADATA_PREFIX) + MAX_METADATA_KEY_LEN
    return name if len(name) <= limit else name[:limit] + "…"


# --- stores --------------------------------------------------------------------------------
# Where application.create_app put them (its lifespan, or the backends it was given): a route
# asks for `db: ReadsDep` and never learns which.


async def reads(request: Request) -> ReadStore:
    """The reads (PostgreSQL, or a test's fake)."""
    return request.app.state.reads


async def signing_keys(request: Request) -> SigningKeyStorePort:
    """The project signing-key store."""
    return request.app.state.signing_keys


async def settings(request: Request) -> GatewaySettings:
    """The gateway's settings (the master signing secret's file, the result wait)."""
    return request.app.state.settings


ReadsDep = Annotated[ReadStore, Depends(reads)]
SigningKeysDep = Annotated[SigningKeyStorePort, Depends(signing_keys)]
SettingsDep = Annotated[GatewaySettings, Depends(settings)]


def require_project(db: ReadStore, project_id: str) -> None:
    """404 ProjectNotFound unless the project exists."""
    if not db.project_exists(project_id):
        raise not_found(GatewayCode.ProjectNotFound, f"no project {project_id!r}")


# What a 404 of a thing in a project says, by its code ({key}: the ID asked for).
_MISSING: dict[GatewayCode, str] = {
    GatewayCode.AssetNotFound: "no asset {key!r} in project {project_id!r}",
    GatewayCode.CustomerNotFound: "no customer {key!r} in project {project_id!r}",
    GatewayCode.WalletNotFound: "no wallet {key!r} in project {project_id!r}",
    GatewayCode.TransactionNotFound: "no transaction {key!r} in project {project_id!r}",
    GatewayCode.HoldNotFound: "no hold {key!r} in project {project_id!r}",
    GatewayCode.RequestNotFound: "no result for reference {key!r} in project {project_id!r} (yet)",
    GatewayCode.SigningKeyNotFound: "no active signing key {key!r} in project {project_id!r}",
}


def found_in_project(db: ReadStore, project_id: str, value: T | None, *, code: GatewayCode, key: str) -> T:
    """`value`, or 404: ProjectNotFound when the project itself is missing, else `code` (no such
    `key` in it). The project is looked up only when `value` is missing: a hit costs one read."""
    if value is None:
        require_project(db, project_id)
        raise not_found(code, _MISSING[code].format(key=key, project_id=project_id))
    return value


def page_in_project(db: ReadStore, project_id: str, page: Page) -> Page:
    """A page of a project's list; an empty one only if the project exists (else 404)."""
    if not page.items:
        require_project(db, project_id)
    return page


# --- responses (for OpenAPI) ---------------------------------------------------------------

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or unknown API key"},
    403: {"model": ErrorBody, "description": "the key does not reach this"},
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorBody, "description": "no such project or entity"},
    422: {"model": ErrorBody, "description": "bad parameter"},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    202: {"model": Pending, "description": "no result within the wait: poll the Location"},
    404: {"model": Result, "description": "Failed: *NotFound"},
    409: {"model": Result, "description": "Failed: DuplicateReferenceId (with `original`), a state conflict"},
    422: {"model": ErrorBody | Result, "description": "the input breaks the contract"},
    503: {"model": ErrorBody, "description": "Kafka unavailable: retry with the same reference ID"},
}

# --- writes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Writer:
    """One write of one HTTP request: `await write(type, path=..., body=...)` (see the module)."""

    settings: GatewaySettings
    client: Publisher
    idempotency_key: str | None

    async def __call__(self, type: str, *, path: dict[str, str], body: BaseModel | None = None, created: bool = False) -> JSONResponse:
        """Publish the request `type` made of the path's IDs and the body's fields; answer its result.

        `created`: a Completed result is 201 with the Location of what it made (else 200)."""
        model = self.request(type, path=path, body=body)
        started = time.monotonic()
        try:
            result = await self.publish(model)
        except ResultTimeout:
            return pending(model)
        finally:
            RESULT_WAIT_SECONDS.labels(type=model.type).observe(time.monotonic() - started)
        return answer(model, result, created=created)

    def request(self, type: str, *, path: dict[str, str], body: BaseModel | None) -> RequestModel:
        """The contract request, validated as the processor will: 422 before anything is published.

        The body was checked field by field already; the path's IDs and a header's reference ID
        join it only here, and the contract's model checks the request as a whole (errors name
        where each field came from: path.walletId, header.Idempotency-Key, body.name)."""
        fields = body.model_dump(exclude={"reference_id"}) if body is not None else {}
        reference_id, reference_from = _reference(getattr(body, "reference_id", None), self.idempotency_key)
        payload = {"type": type, "reference_id": reference_id, **{k: v for k, v in {**path, **fields}.items() if v is not None}}
        rename = {"reference_id": reference_from, **{name: _PATH_FIELDS[name] for name in path}}
        try:
            return REQUEST_TYPES[type].model_validate(payload)  # type: ignore[return-value]
        except ValidationError as error:
            raise validation_error(field_errors(error.errors(include_url=False), rename=rename, prefix="body.")) from None

    async def publish(self, model: RequestModel) -> Result:
        """The request's result (ResultTimeout when none came in time); 503 when Kafka is unreachable."""
        wait = self.settings.result_wait_seconds
        try:
            # The outer bound covers publishing itself (a broker that does not answer).
            return await asyncio.wait_for(self.client.submit(model, timeout=wait), timeout=wait + PUBLISH_GRACE_SECONDS)
        except ResultTimeout:  # a TimeoutError too, but no failure of Kafka's: the caller answers 202
            raise
        except (KafkaError, TimeoutError) as error:
            log.warning("publishing %s failed: %s", model.type, error or type(error).__name__)
            raise GatewayError(
                503,
                GatewayCode.ServiceUnavailable,
                f"Kafka is unavailable; retry with the same reference ID ({model.reference_id})",
                headers={"Retry-After": "1"},
            ) from None


async def writer(request: Request, idempotency_key: IdempotencyKey = None) -> Writer:
    """The write step of this request: the app's settings and Kafka client, the Idempotency-Key
    header (declared here once, for every write route)."""
    return Writer(settings=request.app.state.settings, client=request.app.state.client, idempotency_key=idempotency_key)


Write = Annotated[Writer, Depends(writer)]


def _reference(body_reference: str | None, header_reference: str | None) -> tuple[str, str]:
    """The reference ID and where it came from; a UUID when the client gave none."""
    if body_reference is not None and header_reference is not None and body_reference != header_reference:
        raise invalid("header.Idempotency-Key", "differs from body.reference_id; give one or make them equal")
    if body_reference is not None:
        return body_reference, "body.reference_id"
    if header_reference is not None:
        return header_reference, "header.Idempotency-Key"
    return str(uuid.uuid4()), "body.reference_id"


def result_body(result: Result) -> dict[str, Any]:
    """A result as the gateway answers it: top-level null fields left out."""
    return {key: value for key, value in result.model_dump(mode="json").items() if value is not None}


def answer(model: RequestModel, result: Result, *, created: bool) -> JSONResponse:
    """Completed -> 200, or 201 with a Location when the write made something; Failed -> its code's status."""
    headers = {}
    if result.status == Status.Completed:
        status_code = 201 if created else 200
        location = _location(model, result) if created else None
        if location:
            headers["Location"] = location
    else:
        assert result.error is not None
        status_code = STATUS_BY_CODE.get(result.error.code, 500)
    return JSONResponse(result_body(result), status_code=status_code, headers=headers or None)


def pending(model: RequestModel) -> JSONResponse:
    """202: the request is published but its result did not come in time; poll the Location."""
    project_id = request_project_id(model)
    location = f"/projects/{quote(project_id, safe='')}/requests/{quote(model.reference_id, safe='')}"
    body = Pending(reference_id=model.reference_id, project_id=project_id, type=model.type, location=location)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": location})


def _location(model: RequestModel, result: Result) -> str | None:
    """Where what a Completed create made can be read."""
    p = quote(result.project_id or "", safe="")
    if result.project is not None and model.type == "project.create":
        return f"/projects/{quote(result.project.project_id, safe='')}"
    if result.asset is not None and model.type == "asset.create":
        return f"/projects/{p}/currencies/{quote(result.asset.asset_id, safe='')}"
    if result.wallet is not None and model.type in ("wallet.open", "system_wallet.open"):
        return f"/projects/{p}/wallets/{quote(result.wallet.wallet_id, safe='')}"
    if result.hold is not None and model.type == "hold.create":
        return f"/projects/{p}/holds/{quote(result.hold.hold_id, safe='')}"
    if result.transaction is not None and model.type in ("transaction.run", "transaction.reverse"):
        return f"/projects/{p}/transactions/{quote(result.transaction.transaction_id, safe='')}"
    return None
