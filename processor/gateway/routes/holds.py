"""Holds (beyond the seed): reserve part of a wallet's balance, then capture or void it; read a
hold, and list a wallet's holds. Every edge case: docs/holds-and-reversals.md."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import CaptureBody, HoldBody, Page, VoidBody
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, HoldIdPath, Member, PagingDep, ProjectIdPath, ReadsDep
from processor.gateway.dependencies import WalletIdPath, Write, found_in_project, page_in_project
from processor.gateway.http_errors import GatewayCode
from schemas.results import HoldView, Result

router = APIRouter(route_class=GatewayRoute, tags=["Holds"])

StatusQuery = Annotated[Literal["Active", "Captured", "Voided", "Expired"] | None, Query(description="only holds in this status")]


@router.post("/projects/{projectId}/holds", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="createHold")
async def create_hold(project_id: ProjectIdPath, body: HoldBody, principal: Member, write: Write) -> JSONResponse:
    """Reserve an amount of a wallet (`hold.create`): its `available` drops, its `balance` does not."""
    return await write("hold.create", path={"project_id": project_id}, body=body, created=True)


@router.get("/projects/{projectId}/holds/{holdId}", response_model=HoldView, responses=READ_RESPONSES, operation_id="getHold")
def get_hold(project_id: ProjectIdPath, hold_id: HoldIdPath, principal: Member, db: ReadsDep) -> HoldView:
    """A hold: its amount, status, expiry, and the transactions that made and ended it."""
    return found_in_project(db, project_id, db.get_hold(project_id, hold_id), code=GatewayCode.HoldNotFound, key=hold_id)


@router.post("/projects/{projectId}/holds/{holdId}/capture", response_model=Result, responses=WRITE_RESPONSES, operation_id="captureHold")
async def capture_hold(project_id: ProjectIdPath, hold_id: HoldIdPath, body: CaptureBody, principal: Member, write: Write) -> JSONResponse:
    """Move all or part of an Active hold (`hold.capture`) and release the rest."""
    return await write("hold.capture", path={"project_id": project_id, "hold_id": hold_id}, body=body)


@router.post("/projects/{projectId}/holds/{holdId}/void", response_model=Result, responses=WRITE_RESPONSES, operation_id="voidHold")
async def void_hold(project_id: ProjectIdPath, hold_id: HoldIdPath, body: VoidBody, principal: Member, write: Write) -> JSONResponse:
    """Release an Active hold (`hold.void`); allowed while its wallet is Suspended."""
    return await write("hold.void", path={"project_id": project_id, "hold_id": hold_id}, body=body)


@router.get("/projects/{projectId}/wallets/{walletId}/holds", response_model=Page[HoldView], responses=READ_RESPONSES, operation_id="listWalletHolds")
def list_wallet_holds(
    project_id: ProjectIdPath, wallet_id: WalletIdPath, principal: Member, db: ReadsDep, paging: PagingDep, status: StatusQuery = None
) -> Page:
    """A wallet's holds, oldest first; `?status=Active` for what it holds now."""
    return page_in_project(db, project_id, db.list_wallet_holds(project_id, wallet_id, status=status, paging=paging))
