"""Assets (the seed's currencies): create, list, read one, rename, delete one no wallet used."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import AssetCreateBody, NameBody, Page
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, AssetIdPath, Member, PagingDep
from processor.gateway.dependencies import ProjectIdPath, ReadsDep, Write, found_in_project, page_in_project
from processor.gateway.http_errors import GatewayCode
from schemas.results import AssetView, Result

router = APIRouter(route_class=GatewayRoute, tags=["Assets"])


@router.post("/projects/{projectId}/assets", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="createAsset")
async def create_asset(project_id: ProjectIdPath, body: AssetCreateBody, principal: Member, write: Write) -> JSONResponse:
    """Create an asset (`asset.create`)."""
    return await write("asset.create", path={"project_id": project_id}, body=body, created=True)


@router.get("/projects/{projectId}/assets", response_model=Page[AssetView], responses=READ_RESPONSES, operation_id="listAssets")
def list_assets(project_id: ProjectIdPath, principal: Member, db: ReadsDep, paging: PagingDep) -> Page:
    """The project's assets, in asset_id order."""
    return page_in_project(db, project_id, db.list_assets(project_id, paging))


@router.get("/projects/{projectId}/currencies/{assetId}", response_model=AssetView, responses=READ_RESPONSES, operation_id="getAsset")
def get_asset(project_id: ProjectIdPath, asset_id: AssetIdPath, principal: Member, db: ReadsDep) -> AssetView:
    """An asset."""
    return found_in_project(db, project_id, db.get_asset(project_id, asset_id), code=GatewayCode.AssetNotFound, key=asset_id)


@router.delete("/projects/{projectId}/currencies/{assetId}", response_model=Result, responses=WRITE_RESPONSES, operation_id="deleteAsset")
async def delete_asset(project_id: ProjectIdPath, asset_id: AssetIdPath, principal: Member, write: Write) -> JSONResponse:
    """Delete an asset no wallet has used (`asset.delete`)."""
    return await write("asset.delete", path={"project_id": project_id, "asset_id": asset_id})


@router.put("/projects/{projectId}/currencies/{assetId}/name", response_model=Result, responses=WRITE_RESPONSES, operation_id="renameAsset")
async def rename_asset(project_id: ProjectIdPath, asset_id: AssetIdPath, body: NameBody, principal: Member, write: Write) -> JSONResponse:
    """Rename an asset (`asset.rename`)."""
    return await write("asset.rename", path={"project_id": project_id, "asset_id": asset_id}, body=body)
