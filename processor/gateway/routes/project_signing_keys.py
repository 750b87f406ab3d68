"""A project's request signing keys: make one (its token shown once), list them, revoke one.

Not Kafka writes: the gateway makes and revokes a project's request signing keys in PostgreSQL
itself (processor/signing_keys.py, through signing_key_store.py). A key's secret is derived
from the deployment's master signing secret, which only a gateway given
CLOUDWALLET_SIGNING_MASTER_KEY_FILE has: without it, making a key is 503 (listing and revoking
still work). Operator signing keys are the CLI's alone.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import CreatedSigningKeyView, Page, RevokedSigningKeyView, SigningKeyCreateBody, SigningKeyView
from processor.gateway.dependencies import AUTH_RESPONSES, READ_RESPONSES, Member, PagingDep, ProjectIdPath, ReadsDep
from processor.gateway.dependencies import SettingsDep, SigningKeyIdPath, SigningKeysDep, found_in_project
from processor.gateway.dependencies import page_in_project, require_project
from processor.gateway.http_errors import ErrorBody, GatewayCode, GatewayError
from processor.gateway.gateway_settings import GatewaySettings
from schemas.signing import SigningError

log = logging.getLogger("gateway")

router = APIRouter(route_class=GatewayRoute, tags=["Signing keys"])

_NO_MASTER = (
    "this gateway cannot make signing keys: it has no master signing secret; "
    "the operator must set CLOUDWALLET_SIGNING_MASTER_KEY_FILE (listing and revoking keys still work)"
)
_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorBody, "description": "ProjectNotFound"},
    422: {"model": ErrorBody, "description": "bad parameter or body"},
    503: {"model": ErrorBody, "description": "ServiceUnavailable: the gateway has no (readable) master signing secret, or PostgreSQL is unreachable"},
}
_REVOKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorBody, "description": "SigningKeyNotFound, ProjectNotFound"},
    422: {"model": ErrorBody, "description": "bad parameter"},
}


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
    "/projects/{projectId}/signing-keys", status_code=201, response_model=CreatedSigningKeyView, responses=_CREATE_RESPONSES, operation_id="createSigningKey"
)
def create_project_signing_key(
    project_id: ProjectIdPath,
    principal: Member,
    store: SigningKeysDep,
    db: ReadsDep,
    settings: SettingsDep,
    body: Annotated[SigningKeyCreateBody | None, Body()] = None,
) -> JSONResponse:
    """Make a request signing key of the project; its `token` is shown only in this answer.

    Not idempotent: a retry makes another key (revoke the one not used). Operator keys (any
    project) are made only with `cloudwallet signing-key create --operator`.
    """
    label = body.label if body is not None else None
    master = _master_secret(settings)
    require_project(db, project_id)
    created = store.create(master=master, project_id=project_id, label=label)
    view = CreatedSigningKeyView(
        key_id=created.row.key_id, project_id=project_id, label=created.row.label, created_at=created.row.created_at, token=created.key.token()
    )
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/projects/{projectId}/signing-keys", response_model=Page[SigningKeyView], responses=READ_RESPONSES, operation_id="listSigningKeys")
def list_project_signing_keys(
    project_id: ProjectIdPath, principal: Member, store: SigningKeysDep, db: ReadsDep, paging: PagingDep
) -> Page:
    """The project's signing keys, revoked ones too, newest first ((created_at desc, key_id) order); never a secret."""
    return page_in_project(db, project_id, store.list(project_id, paging))


@router.delete(
    "/projects/{projectId}/signing-keys/{keyId}", response_model=RevokedSigningKeyView, responses=_REVOKE_RESPONSES, operation_id="revokeSigningKey"
)
def revoke_project_signing_key(
    project_id: ProjectIdPath, key_id: SigningKeyIdPath, principal: Member, store: SigningKeysDep, db: ReadsDep
) -> RevokedSigningKeyView:
    """Revoke an active signing key of the project: the processor refuses requests signed with it
    from its next batch on."""
    revoked_at = store.revoke(project_id, key_id)
    revoked_at = found_in_project(db, project_id, revoked_at, code=GatewayCode.SigningKeyNotFound, key=key_id)
    return RevokedSigningKeyView(key_id=key_id, revoked_at=revoked_at)
