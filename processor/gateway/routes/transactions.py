"""Transactions: run one (ordered Issue / Transfer / Redeem operations, all or nothing), list
them by time period or find one by reference ID, read one with its entries."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import Page, ReversalBody, TransactionBody
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, FromQuery, Member, PagingDep, ProjectIdPath
from processor.gateway.dependencies import ReadsDep, ReferenceIdQuery, ToQuery, TransactionIdPath, Write
from processor.gateway.dependencies import found_in_project, metadata_filter, page_in_project, period
from processor.gateway.http_errors import GatewayCode
from schemas.results import Result, TransactionView

router = APIRouter(route_class=GatewayRoute, tags=["Transactions"])


@router.get("/projects/{projectId}/transactions", response_model=Page[TransactionView], responses=READ_RESPONSES, operation_id="listTransactions")
def list_transactions(
    request: Request, project_id: ProjectIdPath, principal: Member, db: ReadsDep, paging: PagingDep,
    start: FromQuery = None, end: ToQuery = None, reference_id: ReferenceIdQuery = None,
) -> Page:
    """Transactions with created_at in [from, to), in (created_at, transaction_id) order, with their entries.

    `?reference_id=R` finds the transaction by its reference ID: a page of zero or one item.

    `?metadata.<key>=<value>` (e.g. `?metadata.order=123`) keeps the transactions whose metadata
    holds that key with that value. One such parameter at most; a key is 1-64 characters of
    `[A-Za-z0-9_.:-]`, a value at most 256 characters (else 422 naming the parameter).
    """
    chosen = period(start, end)
    found = db.list_transactions(project_id, period=chosen, reference_id=reference_id, metadata=metadata_filter(request), paging=paging)
    return page_in_project(db, project_id, found)


@router.get("/projects/{projectId}/transactions/{txId}", response_model=TransactionView, responses=READ_RESPONSES, operation_id="getTransaction")
def get_transaction(project_id: ProjectIdPath, transaction_id: TransactionIdPath, principal: Member, db: ReadsDep) -> TransactionView:
    """A transaction: status, operations as sent, entries, and the error of a Failed one."""
    return found_in_project(db, project_id, db.get_transaction(project_id, transaction_id), code=GatewayCode.TransactionNotFound, key=transaction_id)


@router.post("/projects/{projectId}/transactions", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="runTransaction")
async def run_transaction(project_id: ProjectIdPath, body: TransactionBody, principal: Member, write: Write) -> JSONResponse:
    """Run a transaction (`transaction.run`): operations in order, all or nothing. reference_id is required."""
    return await write("transaction.run", path={"project_id": project_id}, body=body, created=True)


@router.post(
    "/projects/{projectId}/transactions/{txId}/reversal", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="reverseTransaction"
)
async def reverse_transaction(project_id: ProjectIdPath, transaction_id: TransactionIdPath, body: ReversalBody, principal: Member, write: Write) -> JSONResponse:
    """Reverse a Completed transaction (`transaction.reverse`): its operations' opposites in reverse
    order, as one new transaction; at most once, never of a reversal."""
    return await write("transaction.reverse", path={"project_id": project_id, "transaction_id": transaction_id}, body=body, created=True)
