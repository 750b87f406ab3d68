"""Wallets: open (customer and system wallets), rename, describe, set status, read one with its
balance, list a project's system wallets or a customer's wallets, list a wallet's entries, its
balance at an instant and a statement of a period (from the entries, which carry the balance
after each one).

Customer keys read their own wallets only (`WalletReader`): access.py refuses any other before
the request is read, and `_readable_wallet` checks the wallet it is about to answer again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.backends import ReadStore
from processor.gateway.bodies import DescriptionBody, Page, SystemWalletOpenBody, WalletBalanceView, WalletEntryView, WalletOpenBody, WalletRenameBody
from processor.gateway.bodies import WalletStatementView, WalletStatusBody
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, CustomerIdPath, FromQuery, Member, PagingDep
from processor.gateway.dependencies import ProjectIdPath, ReadsDep, ToQuery, WalletIdPath, WalletReader, Write
from processor.gateway.dependencies import as_utc, found_in_project, metadata_filter, page_in_project, period
from processor.gateway.http_errors import GatewayCode, forbidden, invalid, not_found
from processor.gateway.api_keys import KeyKind, Principal
from schemas.amounts import format_minor_units
from schemas.results import Result, WalletView

router = APIRouter(route_class=GatewayRoute, tags=["Wallets"])


@router.put(
    "/projects/{projectId}/wallets/{walletId}/description", response_model=Result, responses=WRITE_RESPONSES, operation_id="setWalletDescription"
)
async def set_wallet_description(
    project_id: ProjectIdPath, wallet_id: WalletIdPath, body: DescriptionBody, principal: Member, write: Write
) -> JSONResponse:
    """Change a wallet's description (`wallet.set_description`)."""
    return await write("wallet.set_description", path={"project_id": project_id, "wallet_id": wallet_id}, body=body)


@router.post(
    "/projects/{projectId}/system-wallets", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="openSystemWallet"
)
async def open_system_wallet(project_id: ProjectIdPath, body: SystemWalletOpenBody, principal: Member, write: Write) -> JSONResponse:
    """Open a system wallet (`system_wallet.open`)."""
    return await write("system_wallet.open", path={"project_id": project_id}, body=body, created=True)


@router.get("/projects/{projectId}/wallets/{walletId}", response_model=WalletView, responses=READ_RESPONSES, operation_id="getWallet")
def get_wallet(project_id: ProjectIdPath, wallet_id: WalletIdPath, principal: WalletReader, db: ReadsDep) -> WalletView:
    """A wallet with its balance. Customer keys: their own wallets only."""
    return _readable_wallet(db, principal, project_id=project_id, wallet_id=wallet_id)


def _readable_wallet(db: ReadStore, principal: Principal, *, project_id: str, wallet_id: str) -> WalletView:
    wallet = db.get_wallet(project_id, wallet_id)
    if principal.kind is KeyKind.customer:
        # GatewayRoute refused any other wallet already (403 before 422); checked again on the
        # wallet about to be answered, so that no change to the access layer can leak one.
        if wallet is None or wallet.customer_id != principal.customer_id:
            raise forbidden()
        return wallet
    return found_in_project(db, project_id, wallet, code=GatewayCode.WalletNotFound, key=wallet_id)


@router.post("/projects/{projectId}/wallets", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="openWallet")
async def open_wallet(project_id: ProjectIdPath, body: WalletOpenBody, principal: Member, write: Write) -> JSONResponse:
    """Open a wallet for a customer (`wallet.open`)."""
    return await write("wallet.open", path={"project_id": project_id}, body=body, created=True)


@router.put("/projects/{projectId}/wallets/{walletId}/status", response_model=Result, responses=WRITE_RESPONSES, operation_id="setWalletStatus")
async def set_wallet_status(
    project_id: ProjectIdPath, wallet_id: WalletIdPath, body: WalletStatusBody, principal: Member, write: Write
) -> JSONResponse:
    """Change a wallet's status: Open, Suspended or Closed (`wallet.set_status`)."""
    return await write("wallet.set_status", path={"project_id": project_id, "wallet_id": wallet_id}, body=body)


@router.get("/projects/{projectId}/system-wallets", response_model=Page[WalletView], responses=READ_RESPONSES, operation_id="listSystemWallets")
def list_system_wallets(project_id: ProjectIdPath, principal: Member, db: ReadsDep, paging: PagingDep) -> Page:
    """The project's system wallets, in wallet_id order."""
    return page_in_project(db, project_id, db.list_wallets(project_id, customer_id=None, paging=paging))


@router.get(
    "/projects/{projectId}/customers/{customerId}/wallets", response_model=Page[WalletView], responses=READ_RESPONSES, operation_id="listCustomerWallets"
)
def list_customer_wallets(
    project_id: ProjectIdPath, customer_id: CustomerIdPath, principal: WalletReader, db: ReadsDep, paging: PagingDep
) -> Page:
    """A customer's wallets (also the Closed ones a deleted customer left), in wallet_id order."""
    if principal.kind is KeyKind.customer and customer_id != principal.customer_id:  # as GatewayRoute checked first
        raise forbidden()
    found = db.list_wallets(project_id, customer_id=customer_id, paging=paging)
    if not found.items and paging.page == 1:  # no wallets: 404 unless the customer exists
        customer = db.get_customer(project_id, customer_id)
        found_in_project(db, project_id, customer, code=GatewayCode.CustomerNotFound, key=customer_id)
    return found


@router.put("/projects/{projectId}/wallets/{walletId}/name", response_model=Result, responses=WRITE_RESPONSES, operation_id="renameWallet")
async def rename_wallet(project_id: ProjectIdPath, wallet_id: WalletIdPath, body: WalletRenameBody, principal: Member, write: Write) -> JSONResponse:
    """Change a wallet's name, and its metadata when given (replaced whole) (`wallet.rename`)."""
    return await write("wallet.rename", path={"project_id": project_id, "wallet_id": wallet_id}, body=body)


@router.get(
    "/projects/{projectId}/wallets/{walletId}/entries", response_model=Page[WalletEntryView], responses=READ_RESPONSES, operation_id="listWalletEntries"
)
def list_wallet_entries(
    request: Request, project_id: ProjectIdPath, wallet_id: WalletIdPath, principal: WalletReader, db: ReadsDep, paging: PagingDep,
    start: FromQuery = None, end: ToQuery = None,
) -> Page:
    """The wallet's ledger entries with created_at in [from, to), in (created_at, entry_id) order.

    `?metadata.<key>=<value>` (e.g. `?metadata.order=123`) keeps the entries of the transactions
    whose metadata holds that key with that value. One such parameter at most; a key is 1-64
    characters of `[A-Za-z0-9_.:-]`, a value at most 256 characters (else 422 naming the parameter).
    """
    chosen, labels = period(start, end), metadata_filter(request)
    wallet = _readable_wallet(db, principal, project_id=project_id, wallet_id=wallet_id)
    asset = db.get_asset(project_id, wallet.asset_id)
    assert asset is not None, "a wallet's asset cannot be deleted"
    return db.wallet_entries(project_id, wallet_id, fractions=asset.fractions, period=chosen, paging=paging, metadata=labels)


AtQuery = Annotated[datetime | None, Query(description="ISO 8601; without an offset it is UTC; default: now")]


@router.get(
    "/projects/{projectId}/wallets/{walletId}/balance", response_model=WalletBalanceView, responses=READ_RESPONSES, operation_id="getWalletBalanceAt"
)
def get_wallet_balance_at(
    project_id: ProjectIdPath, wallet_id: WalletIdPath, principal: WalletReader, db: ReadsDep, at: AtQuery = None
) -> WalletBalanceView:
    """The wallet's balance, held and available as of `at` (its last entry at or before it); 404
    before the wallet existed."""
    now = datetime.now(UTC)
    instant = min(as_utc(at) if at is not None else now, now)  # nothing is known of the future
    wallet, fractions = _wallet_and_scale(db, principal, project_id=project_id, wallet_id=wallet_id, since=instant)
    balance, available = db.balance_before(project_id, wallet_id, instant=instant, inclusive=True)
    amounts = {name: format_minor_units(value, fractions=fractions) for name, value in (("balance", balance), ("held", balance - available), ("available", available))}
    ids = {"project_id": project_id, "wallet_id": wallet_id, "asset_id": wallet.asset_id}
    return WalletBalanceView(**ids, at=instant, **amounts)


@router.get(
    "/projects/{projectId}/wallets/{walletId}/statement", response_model=WalletStatementView, responses=READ_RESPONSES, operation_id="getWalletStatement"
)
def get_wallet_statement(
    project_id: ProjectIdPath, wallet_id: WalletIdPath, principal: WalletReader, db: ReadsDep, paging: PagingDep,
    start: FromQuery = None, end: ToQuery = None,
) -> WalletStatementView:
    """The wallet's entries with created_at in [from, to), with the balance before `from` (opening)
    and before `to` (closing); both ends are required."""
    chosen = period(start, end)
    if chosen.start is None or chosen.end is None:
        raise invalid("query.from" if chosen.start is None else "query.to", "is required for a statement")
    wallet, fractions = _wallet_and_scale(db, principal, project_id=project_id, wallet_id=wallet_id, since=None)
    opening, closing = (db.balance_before(project_id, wallet_id, instant=t, inclusive=False)[0] for t in (chosen.start, chosen.end))
    return WalletStatementView(
        project_id=project_id,
        wallet_id=wallet_id,
        asset_id=wallet.asset_id,
        opening_at=chosen.start,
        closing_at=chosen.end,
        opening_balance=format_minor_units(opening, fractions=fractions),
        closing_balance=format_minor_units(closing, fractions=fractions),
        entries=db.wallet_entries(project_id, wallet_id, fractions=fractions, period=chosen, paging=paging),
    )


def _wallet_and_scale(db: ReadStore, principal: Principal, *, project_id: str, wallet_id: str, since: datetime | None) -> tuple[WalletView, int]:
    """The readable wallet and its asset's scale; 404 when it did not exist yet at `since`."""
    wallet = _readable_wallet(db, principal, project_id=project_id, wallet_id=wallet_id)
    if since is not None and since < wallet.created_at:
        raise not_found(GatewayCode.WalletNotFound, f"wallet {wallet_id!r} did not exist at {since.isoformat()}")
    asset = db.get_asset(project_id, wallet.asset_id)
    assert asset is not None, "a wallet's asset cannot be deleted"
    return wallet, asset.fractions
