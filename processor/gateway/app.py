"""The FastAPI app: every Cloud Wallet endpoint; reads from PostgreSQL, writes through Kafka.

Order of checks on every request: the API key (401), the key's reach (403, the same answer
whether or not the thing asked for exists), both before the request is read (access.py); then
the body's size (413, body_limit.py) and type (415), the input (422 naming the field), then
existence (404). A write becomes one contract request (schemas.requests), is published keyed by
`partition_key` and waits up to `result_wait_seconds` for its result: Completed -> 200/201 with
the result, Failed -> 4xx with the result (its `error` has code, message, operation_index),
no result in time -> 202 with a Location to poll. See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from processor.client import ResultTimeout, WalletClient
from processor.gateway.access import GatewayRoute, Member, Operator, Staff, WalletReader
from processor.gateway.body_limit import BodyLimit
from processor.gateway.errors import (
    STATUS_BY_CODE,
    ErrorBody,
    GatewayCode,
    GatewayError,
    field_errors,
    forbidden,
    install_handlers,
    invalid,
    not_found,
    validation_error,
)
from processor.gateway.keys import KeyKind, KeyStore, Principal
from processor.gateway.models import (
    AssetCreateBody,
    CreatedSigningKeyView,
    CustomerCreateBody,
    CustomerUpdateBody,
    DescriptionBody,
    Health,
    NameBody,
    Page,
    Pending,
    ProjectCreateBody,
    ReferenceBody,
    RevokedSigningKeyView,
    SigningKeyCreateBody,
    SigningKeyView,
    SystemWalletOpenBody,
    TransactionBody,
    WalletEntryView,
    WalletOpenBody,
    WalletStatusBody,
)
from processor.gateway.reads import Paging, Period, Reads
from processor.gateway.settings import GatewaySettings
from processor.gateway.signing_keys import SigningKeyStore
from schemas.requests import request_project_id
from schemas.signing import SigningError
from schemas.limits import (
    ID_PATTERN,
    MAX_ASSET_ID_LEN,
    MAX_CUSTOMER_ID_LEN,
    MAX_PROJECT_ID_LEN,
    MAX_REFERENCE_ID_LEN,
    MAX_WALLET_ID_LEN,
)
from schemas.requests import REQUEST_TYPES, RequestModel
from schemas.results import AssetView, CustomerView, ProjectView, Result, Status, TransactionView, WalletView

log = logging.getLogger("gateway")

MAX_PAGE = 100_000
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
PUBLISH_GRACE_SECONDS = 10.0

# --- parameters ----------------------------------------------------------------------------

ProjectIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_PROJECT_ID_LEN, pattern=ID_PATTERN, description="project ID")
]
WalletIdPath = Annotated[str, Path(min_length=1, max_length=MAX_WALLET_ID_LEN, pattern=ID_PATTERN, description="wallet ID")]
AssetIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ASSET_ID_LEN, pattern=ID_PATTERN, description="asset ID")]
CustomerIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_CUSTOMER_ID_LEN,
        description="the client's own customer ID: printable, not only whitespace (IDs containing '/' cannot be addressed in a path)",
    ),
]
TransactionIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN, description="transaction ID")]
ReferenceIdPath = Annotated[str, Path(min_length=1, max_length=MAX_REFERENCE_ID_LEN, description="reference ID")]
SigningKeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="signing key ID (16 hex digits)")]
PageQuery = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")]
PageSizeQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page (at most {MAX_PAGE_SIZE})")]
FromQuery = Annotated[datetime | None, Query(alias="from", description="ISO 8601; inclusive; without an offset it is UTC")]
ToQuery = Annotated[datetime | None, Query(alias="to", description="ISO 8601; exclusive; without an offset it is UTC")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_REFERENCE_ID_LEN,
        description="the request's reference ID (idempotency key), if the body does not carry reference_id",
    ),
]


def _printable(field: str, value: str) -> str:
    if not value.isprintable() or value.isspace():
        raise invalid(field, "must be printable and not only whitespace")
    return value


def _paging(page: int, page_size: int) -> Paging:
    return Paging(page=page, page_size=page_size)


def _period(start: datetime | None, end: datetime | None) -> Period:
    start = start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start
    end = end.replace(tzinfo=UTC) if end is not None and end.tzinfo is None else end
    if start is not None and end is not None and start > end:
        raise invalid("query.from", "must not be after query.to")
    return Period(start=start, end=end)


# --- access --------------------------------------------------------------------------------
# A route's `principal: Caller | Staff | Operator | Member | WalletReader` declares its reach;
# GatewayRoute (access.py) checks it before anything of the request is read or validated.



async def reads(request: Request) -> Reads:
    return request.app.state.reads


async def signing_keys(request: Request) -> SigningKeyStore:
    return request.app.state.signing_keys


# --- writes --------------------------------------------------------------------------------

# Where each request field comes from, for error messages: path parameters by name.
_PATH_FIELDS = {
    "project_id": "path.projectId",
    "wallet_id": "path.walletId",
    "asset_id": "path.assetId",
    "customer_id": "path.customerId",
}


def _reference(body_reference: str | None, header_reference: str | None) -> tuple[str, str]:
    """The reference ID and where it came from; a UUID when the client gave none."""
    if body_reference is not None and header_reference is not None and body_reference != header_reference:
        raise invalid("header.Idempotency-Key", "differs from body.reference_id; give one or make them equal")
    if body_reference is not None:
        return body_reference, "body.reference_id"
    if header_reference is not None:
        return header_reference, "header.Idempotency-Key"
    return str(uuid.uuid4()), "body.reference_id"


def _check_text(field: str, value: Any) -> None:
    """Refuse what neither JSON on Kafka nor PostgreSQL text can carry: NUL and lone surrogates.

    (Python's JSON parser lets "\\u0000" and "\\ud800" through; the contract's free-text fields
    do not refuse them.)
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(field, "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(field, "must be valid Unicode text (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(f"{field}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(f"{field}.{index}", item)


def _location(model: RequestModel, result: Result) -> str | None:
    p = quote(result.project_id or "", safe="")
    if result.project is not None and model.type == "project.create":
        return f"/projects/{quote(result.project.project_id, safe='')}"
    if result.asset is not None and model.type == "asset.create":
        return f"/projects/{p}/currencies/{quote(result.asset.asset_id, safe='')}"
    if result.wallet is not None and model.type in ("wallet.open", "system_wallet.open"):
        return f"/projects/{p}/wallets/{quote(result.wallet.wallet_id, safe='')}"
    if result.transaction is not None and model.type == "transaction.run":
        return f"/projects/{p}/transactions/{quote(result.transaction.transaction_id, safe='')}"
    return None


def result_body(result: Result) -> dict[str, Any]:
    return {key: value for key, value in result.model_dump(mode="json").items() if value is not None}


async def write(
    request: Request,
    *,
    type: str,
    fields: dict[str, Any],
    body_reference: str | None,
    header_reference: str | None,
    path_fields: dict[str, str] | None = None,
    created: bool = False,
) -> JSONResponse:
    reference_id, reference_from = _reference(body_reference, header_reference)
    payload = {"type": type, "reference_id": reference_id, **{k: v for k, v in fields.items() if v is not None}}
    rename = {**{"reference_id": reference_from}, **(path_fields or {})}
    for key, value in payload.items():
        _check_text(rename.get(key, f"body.{key}"), value)
    try:
        model: RequestModel = REQUEST_TYPES[type].model_validate(payload)  # type: ignore[assignment]
    except ValidationError as error:
        raise validation_error(field_errors(error.errors(include_url=False), rename=rename, prefix="body.")) from None

    settings: GatewaySettings = request.app.state.settings
    client: WalletClient = request.app.state.client
    try:
        # The outer bound covers publishing itself (a broker that does not answer).
        result = await asyncio.wait_for(
            client.submit(model, timeout=settings.result_wait_seconds), timeout=settings.result_wait_seconds + PUBLISH_GRACE_SECONDS
        )
    except ResultTimeout:
        project_id = request_project_id(model)
        location = f"/projects/{quote(project_id, safe='')}/requests/{quote(model.reference_id, safe='')}"
        pending = Pending(reference_id=model.reference_id, project_id=project_id, type=model.type, location=location)
        return JSONResponse(pending.model_dump(mode="json"), status_code=202, headers={"Location": location})
    except (KafkaError, TimeoutError) as error:
        log.warning("publishing %s failed: %s", model.type, error or type(error).__name__)
        raise GatewayError(
            503,
            GatewayCode.ServiceUnavailable,
            f"Kafka is unavailable; retry with the same reference ID ({model.reference_id})",
            headers={"Retry-After": "1"},
        ) from None

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


# --- routes --------------------------------------------------------------------------------

_AUTH = {401: {"model": ErrorBody, "description": "no or unknown API key"}, 403: {"model": ErrorBody, "description": "the key does not reach this"}}
_READ = {**_AUTH, 404: {"model": ErrorBody, "description": "no such project or entity"}, 422: {"model": ErrorBody, "description": "bad parameter"}}
_WRITE = {
    **_AUTH,
    202: {"model": Pending, "description": "no result within the wait: poll the Location"},
    404: {"model": Result, "description": "Failed: *NotFound"},
    409: {"model": Result, "description": "Failed: DuplicateReferenceId (with `original`), a state conflict"},
    422: {"model": ErrorBody | Result, "description": "the input breaks the contract"},
    503: {"model": ErrorBody, "description": "Kafka unavailable: retry with the same reference ID"},
}

# Every route checks key and reach first (access.GatewayRoute).
router = APIRouter(route_class=GatewayRoute)


@router.get("/health", include_in_schema=False)
def health() -> Health:
    return Health()


# Projects ----------------------------------------------------------------------------------


@router.post("/projects", status_code=201, response_model=Result, responses=_WRITE, tags=["Projects"], operation_id="createProject")
async def create_project(
    request: Request, body: ProjectCreateBody, principal: Operator, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Create a project (`project.create`). Operator keys only."""
    return await write(
        request,
        type="project.create",
        fields={"project_id": body.project_id, "name": body.name},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        created=True,
    )


@router.put("/projects/{projectId}/name", response_model=Result, responses=_WRITE, tags=["Projects"], operation_id="renameProject")
async def rename_project(
    request: Request, projectId: ProjectIdPath, body: NameBody, principal: Member, idempotency_key: IdempotencyKey = None  # noqa: N803
) -> JSONResponse:
    """Rename a project (`project.rename`)."""
    return await write(
        request,
        type="project.rename",
        fields={"project_id": projectId, "name": body.name},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.get("/projects", response_model=Page[ProjectView], responses=_READ, tags=["Projects"], operation_id="listProjects")
def list_projects(
    principal: Staff, db: Annotated[Reads, Depends(reads)], page: PageQuery = 1, page_size: PageSizeQuery = DEFAULT_PAGE_SIZE
) -> Page:
    """Projects in project_id order: every project for an operator key, its own for a project key."""
    only = None if principal.kind is KeyKind.operator else principal.project_id
    return db.list_projects(_paging(page, page_size), only=only)


@router.get("/projects/{projectId}", response_model=ProjectView, responses=_READ, tags=["Projects"], operation_id="getProject")
def get_project(projectId: ProjectIdPath, principal: Member, db: Annotated[Reads, Depends(reads)]) -> ProjectView:  # noqa: N803
    """A project with all its assets."""
    project = db.get_project(projectId)
    if project is None:
        raise not_found(GatewayCode.ProjectNotFound, f"no project {projectId!r}")
    return project


def _require_project(db: Reads, project_id: str) -> None:
    if not db.project_exists(project_id):
        raise not_found(GatewayCode.ProjectNotFound, f"no project {project_id!r}")


# Wallets -----------------------------------------------------------------------------------


@router.put(
    "/projects/{projectId}/wallets/{walletId}/description",
    response_model=Result,
    responses=_WRITE,
    tags=["Wallets"],
    operation_id="setWalletDescription",
)
async def set_wallet_description(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    walletId: WalletIdPath,  # noqa: N803
    body: DescriptionBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Change a wallet's description (`wallet.set_description`)."""
    return await write(
        request,
        type="wallet.set_description",
        fields={"project_id": projectId, "wallet_id": walletId, "description": body.description},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.post(
    "/projects/{projectId}/system-wallets",
    status_code=201,
    response_model=Result,
    responses=_WRITE,
    tags=["Wallets"],
    operation_id="openSystemWallet",
)
async def open_system_wallet(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    body: SystemWalletOpenBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Open a system wallet (`system_wallet.open`)."""
    return await write(
        request,
        type="system_wallet.open",
        fields={"project_id": projectId, **body.model_dump(exclude={"reference_id"})},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields={"project_id": "path.projectId"},
        created=True,
    )


@router.get(
    "/projects/{projectId}/wallets/{walletId}", response_model=WalletView, responses=_READ, tags=["Wallets"], operation_id="getWallet"
)
def get_wallet(
    projectId: ProjectIdPath,  # noqa: N803
    walletId: WalletIdPath,  # noqa: N803
    principal: WalletReader,
    db: Annotated[Reads, Depends(reads)],
) -> WalletView:
    """A wallet with its balance. Customer keys: their own wallets only."""
    return _readable_wallet(db, principal, projectId, walletId)


def _readable_wallet(db: Reads, principal: Principal, project_id: str, wallet_id: str) -> WalletView:
    wallet = db.get_wallet(project_id, wallet_id)
    if principal.kind is KeyKind.customer:
        # GatewayRoute refused any other wallet already (403 before 422); checked again on the
        # wallet about to be answered, so that no change to the access layer can leak one.
        if wallet is None or wallet.customer_id != principal.customer_id:
            raise forbidden()
        return wallet
    if wallet is None:
        _require_project(db, project_id)
        raise not_found(GatewayCode.WalletNotFound, f"no wallet {wallet_id!r} in project {project_id!r}")
    return wallet


@router.post(
    "/projects/{projectId}/wallets", status_code=201, response_model=Result, responses=_WRITE, tags=["Wallets"], operation_id="openWallet"
)
async def open_wallet(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    body: WalletOpenBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Open a wallet for a customer (`wallet.open`)."""
    return await write(
        request,
        type="wallet.open",
        fields={"project_id": projectId, **body.model_dump(exclude={"reference_id"})},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields={"project_id": "path.projectId"},
        created=True,
    )


@router.put(
    "/projects/{projectId}/wallets/{walletId}/status", response_model=Result, responses=_WRITE, tags=["Wallets"], operation_id="setWalletStatus"
)
async def set_wallet_status(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    walletId: WalletIdPath,  # noqa: N803
    body: WalletStatusBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Change a wallet's status: Open, Suspended or Closed (`wallet.set_status`)."""
    return await write(
        request,
        type="wallet.set_status",
        fields={"project_id": projectId, "wallet_id": walletId, "status": body.status},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.get(
    "/projects/{projectId}/system-wallets",
    response_model=Page[WalletView],
    responses=_READ,
    tags=["Wallets"],
    operation_id="listSystemWallets",
)
def list_system_wallets(
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """The project's system wallets, in wallet_id order."""
    found = db.list_wallets(projectId, customer_id=None, paging=_paging(page, page_size))
    if not found.items:
        _require_project(db, projectId)
    return found


@router.get(
    "/projects/{projectId}/customers/{customerId}/wallets",
    response_model=Page[WalletView],
    responses=_READ,
    tags=["Wallets"],
    operation_id="listCustomerWallets",
)
def list_customer_wallets(
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    principal: WalletReader,
    db: Annotated[Reads, Depends(reads)],
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """A customer's wallets (also the Closed ones a deleted customer left), in wallet_id order."""
    if principal.kind is KeyKind.customer and customerId != principal.customer_id:  # as GatewayRoute checked first
        raise forbidden()
    _printable("path.customerId", customerId)
    found = db.list_wallets(projectId, customer_id=customerId, paging=_paging(page, page_size))
    if not found.items and page == 1:
        _require_project(db, projectId)
        if db.get_customer(projectId, customerId) is None:
            raise not_found(GatewayCode.CustomerNotFound, f"no customer {customerId!r} in project {projectId!r}")
    return found


@router.put(
    "/projects/{projectId}/wallets/{walletId}/name", response_model=Result, responses=_WRITE, tags=["Wallets"], operation_id="renameWallet"
)
async def rename_wallet(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    walletId: WalletIdPath,  # noqa: N803
    body: NameBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Change a wallet's name (`wallet.rename`)."""
    return await write(
        request,
        type="wallet.rename",
        fields={"project_id": projectId, "wallet_id": walletId, "name": body.name},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.get(
    "/projects/{projectId}/wallets/{walletId}/entries",
    response_model=Page[WalletEntryView],
    responses=_READ,
    tags=["Wallets"],
    operation_id="listWalletEntries",
)
def list_wallet_entries(
    projectId: ProjectIdPath,  # noqa: N803
    walletId: WalletIdPath,  # noqa: N803
    principal: WalletReader,
    db: Annotated[Reads, Depends(reads)],
    start: FromQuery = None,
    end: ToQuery = None,
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """The wallet's ledger entries with created_at in [from, to), in (created_at, entry_id) order."""
    period = _period(start, end)
    wallet = _readable_wallet(db, principal, projectId, walletId)
    fractions = _fractions(db, projectId, wallet.asset_id)
    return db.wallet_entries(projectId, walletId, fractions=fractions, period=period, paging=_paging(page, page_size))


def _fractions(db: Reads, project_id: str, asset_id: str) -> int:
    asset = db.get_asset(project_id, asset_id)
    assert asset is not None, "a wallet's asset cannot be deleted"
    return asset.fractions


# Assets ------------------------------------------------------------------------------------


@router.post(
    "/projects/{projectId}/assets", status_code=201, response_model=Result, responses=_WRITE, tags=["Assets"], operation_id="createAsset"
)
async def create_asset(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    body: AssetCreateBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create an asset (`asset.create`)."""
    return await write(
        request,
        type="asset.create",
        fields={"project_id": projectId, **body.model_dump(exclude={"reference_id"})},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields={"project_id": "path.projectId"},
        created=True,
    )


@router.get("/projects/{projectId}/assets", response_model=Page[AssetView], responses=_READ, tags=["Assets"], operation_id="listAssets")
def list_assets(
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """The project's assets, in asset_id order."""
    found = db.list_assets(projectId, _paging(page, page_size))
    if not found.items:
        _require_project(db, projectId)
    return found


@router.get(
    "/projects/{projectId}/currencies/{assetId}", response_model=AssetView, responses=_READ, tags=["Assets"], operation_id="getAsset"
)
def get_asset(
    projectId: ProjectIdPath,  # noqa: N803
    assetId: AssetIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
) -> AssetView:
    """An asset."""
    asset = db.get_asset(projectId, assetId)
    if asset is None:
        _require_project(db, projectId)
        raise not_found(GatewayCode.AssetNotFound, f"no asset {assetId!r} in project {projectId!r}")
    return asset


@router.delete(
    "/projects/{projectId}/currencies/{assetId}", response_model=Result, responses=_WRITE, tags=["Assets"], operation_id="deleteAsset"
)
async def delete_asset(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    assetId: AssetIdPath,  # noqa: N803
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Delete an asset no wallet has used (`asset.delete`)."""
    return await write(
        request,
        type="asset.delete",
        fields={"project_id": projectId, "asset_id": assetId},
        body_reference=None,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.put(
    "/projects/{projectId}/currencies/{assetId}/name", response_model=Result, responses=_WRITE, tags=["Assets"], operation_id="renameAsset"
)
async def rename_asset(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    assetId: AssetIdPath,  # noqa: N803
    body: NameBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Rename an asset (`asset.rename`)."""
    return await write(
        request,
        type="asset.rename",
        fields={"project_id": projectId, "asset_id": assetId, "name": body.name},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


# Transactions ------------------------------------------------------------------------------


@router.get(
    "/projects/{projectId}/transactions",
    response_model=Page[TransactionView],
    responses=_READ,
    tags=["Transactions"],
    operation_id="listTransactions",
)
def list_transactions(
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
    start: FromQuery = None,
    end: ToQuery = None,
    reference_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_REFERENCE_ID_LEN, description="only the transaction with this reference ID (0 or 1 items)"),
    ] = None,
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """Transactions with created_at in [from, to), in (created_at, transaction_id) order, with their entries.

    `?reference_id=R` finds the transaction by its reference ID: a page of zero or one item.
    """
    period = _period(start, end)
    if reference_id is not None:
        _printable("query.reference_id", reference_id)
    found = db.list_transactions(projectId, period=period, reference_id=reference_id, paging=_paging(page, page_size))
    if not found.items:
        _require_project(db, projectId)
    return found


@router.get(
    "/projects/{projectId}/transactions/{txId}",
    response_model=TransactionView,
    responses=_READ,
    tags=["Transactions"],
    operation_id="getTransaction",
)
def get_transaction(
    projectId: ProjectIdPath,  # noqa: N803
    txId: TransactionIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
) -> TransactionView:
    """A transaction: status, operations as sent, entries, and the error of a Failed one."""
    transaction = db.get_transaction(projectId, txId)
    if transaction is None:
        _require_project(db, projectId)
        raise not_found(GatewayCode.TransactionNotFound, f"no transaction {txId!r} in project {projectId!r}")
    return transaction


@router.post(
    "/projects/{projectId}/transactions",
    status_code=201,
    response_model=Result,
    responses=_WRITE,
    tags=["Transactions"],
    operation_id="runTransaction",
)
async def run_transaction(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    body: TransactionBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Run a transaction (`transaction.run`): operations in order, all or nothing. reference_id is required."""
    return await write(
        request,
        type="transaction.run",
        fields={
            "project_id": projectId,
            "description": body.description,
            "operations": [operation.model_dump() for operation in body.operations],
        },
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields={"project_id": "path.projectId"},
        created=True,
    )


# Customers ---------------------------------------------------------------------------------


async def _customer_write(
    request: Request, type: str, project_id: str, customer_id: str, body: Any, idempotency_key: str | None, **fields: Any
) -> JSONResponse:
    return await write(
        request,
        type=type,
        fields={"project_id": project_id, "customer_id": customer_id, **fields},
        body_reference=body.reference_id if body is not None else None,
        header_reference=idempotency_key,
        path_fields=_PATH_FIELDS,
    )


@router.put(
    "/projects/{projectId}/customers/{customerId}/resume",
    response_model=Result,
    responses=_WRITE,
    tags=["Customers"],
    operation_id="resumeCustomer",
)
async def resume_customer(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    principal: Member,
    body: Annotated[ReferenceBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Make a customer Active again; their wallets stay as they are (`customer.resume`)."""
    return await _customer_write(request, "customer.resume", projectId, customerId, body, idempotency_key)


@router.put(
    "/projects/{projectId}/customers/{customerId}", response_model=Result, responses=_WRITE, tags=["Customers"], operation_id="updateCustomer"
)
async def update_customer(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    body: CustomerUpdateBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create or update a customer by its ID (`customer.upsert`)."""
    return await _customer_write(
        request, "customer.upsert", projectId, customerId, body, idempotency_key, name=body.name, description=body.description
    )


@router.post("/projects/{projectId}/customers", response_model=Result, responses=_WRITE, tags=["Customers"], operation_id="createCustomer")
async def create_customer(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    body: CustomerCreateBody,
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a customer, or update the one with this customer_id (`customer.upsert`)."""
    return await write(
        request,
        type="customer.upsert",
        fields={"project_id": projectId, **body.model_dump(exclude={"reference_id"})},
        body_reference=body.reference_id,
        header_reference=idempotency_key,
        path_fields={"project_id": "path.projectId"},
    )


@router.get(
    "/projects/{projectId}/customers", response_model=Page[CustomerView], responses=_READ, tags=["Customers"], operation_id="listCustomers"
)
def list_customers(
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """The project's customers, in customer_id order."""
    found = db.list_customers(projectId, _paging(page, page_size))
    if not found.items:
        _require_project(db, projectId)
    return found


@router.delete(
    "/projects/{projectId}/customers/{customerId}", response_model=Result, responses=_WRITE, tags=["Customers"], operation_id="deleteCustomer"
)
async def delete_customer(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    principal: Member,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Delete a customer whose wallets are all Closed (`customer.delete`)."""
    return await _customer_write(request, "customer.delete", projectId, customerId, None, idempotency_key)


@router.get(
    "/projects/{projectId}/customers/{customerId}", response_model=CustomerView, responses=_READ, tags=["Customers"], operation_id="getCustomer"
)
def get_customer(
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
) -> CustomerView:
    """A customer."""
    _printable("path.customerId", customerId)
    customer = db.get_customer(projectId, customerId)
    if customer is None:
        _require_project(db, projectId)
        raise not_found(GatewayCode.CustomerNotFound, f"no customer {customerId!r} in project {projectId!r}")
    return customer


@router.put(
    "/projects/{projectId}/customers/{customerId}/suspend",
    response_model=Result,
    responses=_WRITE,
    tags=["Customers"],
    operation_id="suspendCustomer",
)
async def suspend_customer(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    customerId: CustomerIdPath,  # noqa: N803
    principal: Member,
    body: Annotated[ReferenceBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Suspend a customer and every Open wallet of theirs (`customer.suspend`)."""
    return await _customer_write(request, "customer.suspend", projectId, customerId, body, idempotency_key)


# Results of writes -------------------------------------------------------------------------


@router.get(
    "/projects/{projectId}/requests/{referenceId:path}",
    response_model=Result,
    responses=_READ,
    tags=["Requests"],
    operation_id="getRequestResult",
)
def get_request_result(
    projectId: ProjectIdPath,  # noqa: N803
    referenceId: ReferenceIdPath,  # noqa: N803
    principal: Member,
    db: Annotated[Reads, Depends(reads)],
) -> JSONResponse:
    """The stored result of the write with this reference ID (where a 202's Location points).

    404 RequestNotFound until the processor has applied it (a request for a missing project is
    never stored: it answered ProjectNotFound and spent nothing).
    """
    _printable("path.referenceId", referenceId)
    result = db.get_result(projectId, referenceId)
    if result is None:
        _require_project(db, projectId)
        raise not_found(GatewayCode.RequestNotFound, f"no result for reference {referenceId!r} in project {projectId!r} (yet)")
    return JSONResponse(result_body(result))


# Signing keys ------------------------------------------------------------------------------
# Not Kafka writes: the gateway makes and revokes a project's request signing keys in
# PostgreSQL itself (processor/signing_keys.py). Operator signing keys are the CLI's alone.

_NO_MASTER = (
    "this gateway cannot make signing keys: it has no master signing secret; "
    "the operator must set CLOUDWALLET_SIGNING_MASTER_KEY_FILE (listing and revoking keys still work)"
)
_SIGNING_CREATE = {
    **_AUTH,
    404: {"model": ErrorBody, "description": "ProjectNotFound"},
    422: {"model": ErrorBody, "description": "bad parameter or body"},
    503: {"model": ErrorBody, "description": "ServiceUnavailable: the gateway has no (readable) master signing secret, or PostgreSQL is unreachable"},
}
_SIGNING_REVOKE = {**_AUTH, 404: {"model": ErrorBody, "description": "SigningKeyNotFound, ProjectNotFound"}, 422: {"model": ErrorBody, "description": "bad parameter"}}


def _master_secret(settings: GatewaySettings) -> bytes:
    """The master signing secret, read from its file (503 when the gateway has none)."""
    if settings.signing_master_key_file is None:
        raise GatewayError(503, GatewayCode.ServiceUnavailable, _NO_MASTER)
    try:
        return settings.master_secret()
    except SigningError as error:
        log.error("cannot make signing keys: %s", error)  # the file's path stays in the log
        raise GatewayError(
            503,
            GatewayCode.ServiceUnavailable,
            "this gateway cannot make signing keys: it cannot use its master signing secret; "
            "the operator must fix CLOUDWALLET_SIGNING_MASTER_KEY_FILE (the gateway's log says why)",
        ) from None


@router.post(
    "/projects/{projectId}/signing-keys",
    status_code=201,
    response_model=CreatedSigningKeyView,
    responses=_SIGNING_CREATE,
    tags=["Signing keys"],
    operation_id="createSigningKey",
)
def create_project_signing_key(
    request: Request,
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    store: Annotated[SigningKeyStore, Depends(signing_keys)],
    db: Annotated[Reads, Depends(reads)],
    body: Annotated[SigningKeyCreateBody | None, Body()] = None,
) -> JSONResponse:
    """Make a request signing key of the project; its `token` is shown only in this answer.

    Not idempotent: a retry makes another key (revoke the one not used). Operator keys (any
    project) are made only with `cloudwallet signing-key create --operator`.
    """
    label = body.label if body is not None else None
    _check_text("body.label", label)
    master = _master_secret(request.app.state.settings)
    _require_project(db, projectId)
    created = store.create(master=master, project_id=projectId, label=label)
    view = CreatedSigningKeyView(
        key_id=created.row.key_id, project_id=projectId, label=created.row.label, created_at=created.row.created_at, token=created.key.token()
    )
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"})


@router.get(
    "/projects/{projectId}/signing-keys",
    response_model=Page[SigningKeyView],
    responses=_READ,
    tags=["Signing keys"],
    operation_id="listSigningKeys",
)
def list_project_signing_keys(
    projectId: ProjectIdPath,  # noqa: N803
    principal: Member,
    store: Annotated[SigningKeyStore, Depends(signing_keys)],
    db: Annotated[Reads, Depends(reads)],
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> Page:
    """The project's signing keys, revoked ones too, newest first ((created_at desc, key_id) order); never a secret."""
    found = store.list(projectId, _paging(page, page_size))
    if not found.items:
        _require_project(db, projectId)
    return found


@router.delete(
    "/projects/{projectId}/signing-keys/{keyId}",
    response_model=RevokedSigningKeyView,
    responses=_SIGNING_REVOKE,
    tags=["Signing keys"],
    operation_id="revokeSigningKey",
)
def revoke_project_signing_key(
    projectId: ProjectIdPath,  # noqa: N803
    keyId: SigningKeyIdPath,  # noqa: N803
    principal: Member,
    store: Annotated[SigningKeyStore, Depends(signing_keys)],
    db: Annotated[Reads, Depends(reads)],
) -> RevokedSigningKeyView:
    """Revoke an active signing key of the project: the processor refuses requests signed with it
    from its next batch on."""
    revoked_at = store.revoke(projectId, keyId)
    if revoked_at is None:
        _require_project(db, projectId)
        raise not_found(GatewayCode.SigningKeyNotFound, f"no active signing key {keyId!r} in project {projectId!r}")
    return RevokedSigningKeyView(key_id=keyId, revoked_at=revoked_at)


# --- the app -------------------------------------------------------------------------------


def create_app(settings: GatewaySettings, *, client: WalletClient | None = None) -> FastAPI:
    """The gateway app. Its lifespan creates the topics (if allowed), starts one shared
    WalletClient and opens the database engine."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = sa.create_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=16, pool_pre_ping=True)
        app.state.settings = settings
        app.state.reads = Reads(engine)
        app.state.keys = KeyStore(engine, cache_seconds=settings.api_key_cache_seconds)
        app.state.signing_keys = SigningKeyStore(engine)
        own_client = client is None
        wallet_client = client or WalletClient(
            kafka=settings.kafka,
            signing_key=settings.client_signing_key,  # the gateway's operator signing key
            requests_topic=settings.requests_topic,
            results_topic=settings.results_topic,
        )
        try:
            if own_client:
                # The processor creates the topics; the gateway's principal may only write
                # requests and read results (processor/stream/acls.py).
                await wallet_client.start()
            app.state.client = wallet_client
            if own_client and settings.client_signing_key is None:
                log.warning(
                    "the gateway has no signing key (CLOUDWALLET_SIGNING_KEY[_FILE]): a processor that requires signatures "
                    "answers every write Unauthorized (500); give it an operator key: cloudwallet signing-key create --operator"
                )
            log.info("gateway ready: requests to %s, results from %s", settings.requests_topic, settings.results_topic)
            yield
        finally:
            if own_client:
                await wallet_client.stop()
            engine.dispose()

    app = FastAPI(
        title="Cloud Wallet gateway",
        version="1.0.0",
        description=(
            "Every Cloud Wallet endpoint over HTTP. Reads come from PostgreSQL; writes go through Kafka "
            "and answer with the processor's result. Authenticate with the X-Api-Key header."
        ),
        lifespan=lifespan,
    )
    install_handlers(app)

    # Every body, with a Content-Length or chunked: counted as it is read, 413 past the limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    app.include_router(router)
    return app
