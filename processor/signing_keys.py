"""Making, listing and revoking signing keys (the CLI and the gateway); see processor/signing.py.

A key is shown once, as a token, when it is made; the database keeps its scope and the SHA-256
of its secret. Making one needs the master signing secret (to derive the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from processor.signing import SigningError, SigningKey, derive_secret, key_for, new_key_id, secret_sha256
from processor.storage.models import signing_keys
from schemas.requests import is_project_id


@dataclass(frozen=True, kw_only=True)
class SigningKeyRow:
    key_id: str
    project_id: str | None  # None: an operator key
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def create_signing_key(engine: sa.Engine, *, master: bytes, project_id: str | None, label: str | None = None) -> SigningKey:
    """A new key for `project_id` (None: an operator key); its token is shown only now."""
    if project_id is not None and not is_project_id(project_id):
        raise SigningError(f"{project_id!r} is not a project ID")
    key_id = new_key_id()
    with engine.begin() as connection:
        connection.execute(
            sa.insert(signing_keys).values(
                key_id=key_id,
                project_id=project_id,
                secret_sha256=secret_sha256(derive_secret(master, key_id)),
                label=label[:200] if label else None,
                created_at=datetime.now(UTC),
            )
        )
    return key_for(master, key_id)


def list_signing_keys(engine: sa.Engine, *, project_id: str | None = None) -> list[SigningKeyRow]:
    """Keys, newest first: all of them, or those of one project (never a secret)."""
    t = signing_keys
    query = sa.select(t.c.key_id, t.c.project_id, t.c.label, t.c.created_at, t.c.revoked_at).order_by(t.c.created_at.desc(), t.c.key_id)
    if project_id is not None:
        query = query.where(t.c.project_id == project_id)
    with engine.connect() as connection:
        return [SigningKeyRow(**row._mapping) for row in connection.execute(query)]


def revoke_signing_key(engine: sa.Engine, key_id: str, *, project_id: str | None = None) -> bool:
    """Revoke an active key (of `project_id` when given); False when there is none. The
    processor refuses requests signed with it from its next batch on."""
    t = signing_keys
    query = sa.update(t).where(t.c.key_id == key_id, t.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
    if project_id is not None:
        query = query.where(t.c.project_id == project_id)
    with engine.begin() as connection:
        return connection.execute(query).rowcount == 1
