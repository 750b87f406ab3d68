"""`GET /projects/{projectId}/requests/{referenceId}`: the stored result of any write, where a
202's Location points (not a seed endpoint)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.dependencies import READ_RESPONSES, Member, ProjectIdPath, ReadsDep, ReferenceIdPath, found_in_project, result_body
from processor.gateway.http_errors import GatewayCode
from schemas.results import Result

router = APIRouter(route_class=GatewayRoute, tags=["Requests"])


@router.get("/projects/{projectId}/requests/{referenceId:path}", response_model=Result, responses=READ_RESPONSES, operation_id="getRequestResult")
def get_request_result(project_id: ProjectIdPath, reference_id: ReferenceIdPath, principal: Member, db: ReadsDep) -> JSONResponse:
    """The stored result of the write with this reference ID (where a 202's Location points).

    404 RequestNotFound until the processor has applied it (a request for a missing project is
    never stored: it answered ProjectNotFound and spent nothing).
    """
    result = db.get_result(project_id, reference_id)
    found = found_in_project(db, project_id, result, code=GatewayCode.RequestNotFound, key=reference_id)
    return JSONResponse(result_body(found))
