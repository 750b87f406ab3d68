"""A project's request signing keys over HTTP (`/projects/{projectId}/signing-keys`).

The database work of those routes (routes/project_signing_keys.py): one of the app's backends
(backends.SigningKeyStorePort; the unit tests give `create_app` a fake instead). The keys
themselves are processor/signing_keys.py's: a key's secret is derived from the deployment's
master signing secret, which the route reads from the settings and passes in. Only keys of the
one project are ever listed or revoked here: operator signing keys (project NULL) are made,
listed and revoked with the CLI.

Blocking: the routes that call these run in FastAPI's worker threads.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from processor.gateway.bodies import Page, SigningKeyView
from processor.gateway.reads import Paging
from processor.signing_keys import CreatedSigningKey, SigningKeyRow, list_signing_keys, new_signing_key, revoke_signing_key_at


def signing_key_view(row: SigningKeyRow) -> SigningKeyView:
    assert row.project_id is not None, "only a project's keys are answered over HTTP"
    return SigningKeyView(key_id=row.key_id, project_id=row.project_id, label=row.label, created_at=row.created_at, revoked_at=row.revoked_at)


class SigningKeyStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, *, master: bytes, project_id: str, label: str | None) -> CreatedSigningKey:
        return new_signing_key(self.engine, master=master, project_id=project_id, label=label)

    def list(self, project_id: str, paging: Paging) -> Page:
        """The project's keys (revoked ones too), newest first; never an operator key."""
        rows = list_signing_keys(self.engine, project_id=project_id, limit=paging.page_size + 1, offset=paging.offset)
        has_more = len(rows) > paging.page_size
        items = [signing_key_view(row) for row in rows[: paging.page_size]]
        return Page(items=items, page=paging.page, page_size=paging.page_size, has_more=has_more)

    def revoke(self, project_id: str, key_id: str) -> datetime | None:
        """When the project's active key `key_id` was revoked; None when it has no such key."""
        return revoke_signing_key_at(self.engine, key_id, project_id=project_id)
