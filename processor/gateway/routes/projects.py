"""Projects: create (operator keys only), rename, list, read one with its assets."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import NameBody, Page, ProjectCreateBody
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, Member, Operator, PagingDep, ProjectIdPath
from processor.gateway.dependencies import ReadsDep, Staff, Write
from processor.gateway.http_errors import GatewayCode, not_found
from processor.gateway.api_keys import KeyKind
from schemas.results import ProjectView, Result

router = APIRouter(route_class=GatewayRoute, tags=["Projects"])


@router.post("/projects", status_code=201, response_model=Result, responses=WRITE_RESPONSES, operation_id="createProject")
async def create_project(body: ProjectCreateBody, principal: Operator, write: Write) -> JSONResponse:
    """Create a project (`project.create`). Operator keys only."""
    return await write("project.create", path={}, body=body, created=True)


@router.put("/projects/{projectId}/name", response_model=Result, responses=WRITE_RESPONSES, operation_id="renameProject")
async def rename_project(project_id: ProjectIdPath, body: NameBody, principal: Member, write: Write) -> JSONResponse:
    """Rename a project (`project.rename`)."""
    return await write("project.rename", path={"project_id": project_id}, body=body)


@router.get("/projects", response_model=Page[ProjectView], responses=READ_RESPONSES, operation_id="listProjects")
def list_projects(principal: Staff, db: ReadsDep, paging: PagingDep) -> Page:
    """Projects in project_id order: every project for an operator key, its own for a project key."""
    only = None if principal.kind is KeyKind.operator else principal.project_id
    return db.list_projects(paging, only=only)


@router.get("/projects/{projectId}", response_model=ProjectView, responses=READ_RESPONSES, operation_id="getProject")
def get_project(project_id: ProjectIdPath, principal: Member, db: ReadsDep) -> ProjectView:
    """A project with all its assets."""
    project = db.get_project(project_id)
    if project is None:
        raise not_found(GatewayCode.ProjectNotFound, f"no project {project_id!r}")
    return project
