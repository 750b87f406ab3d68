"""Making, listing and revoking signing keys (the CLI and the gateway); see schemas/signing.py.

A key is shown once, as a token, when it is made; the database keeps its scope and the SHA-256
of its secret. Making one needs the master signing secret (to derive the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from processor.settings import SigningSettings
from schemas.signing import SigningError, SigningKey, derive_secret, key_for, new_key_id, secret_sha256
from processor.storage.tables import signing_keys
from schemas.requests import is_project_id


@dataclass(frozen=True, kw_only=True)
class SigningKeyRow:
    key_id: str
    project_id: str | None  # None: an operator key
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class CreatedSigningKey:
    key: SigningKey  # its token is shown only now
    row: SigningKeyRow


def new_signing_key(engine: sa.Engine, *, master: bytes, project_id: str | None, label: str | None = None) -> CreatedSigningKey:
    """A new key for `project_id` (None: an operator key), with the row the database keeps."""
    if project_id is not None and not is_project_id(project_id):
        raise SigningError(f"{project_id!r} is not a project ID")
    key_id = new_key_id()
    row = SigningKeyRow(key_id=key_id, project_id=project_id, label=label[:200] if label else None, created_at=datetime.now(UTC), revoked_at=None)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(signing_keys).values(
                key_id=key_id,
                project_id=project_id,
                secret_sha256=secret_sha256(derive_secret(master, key_id)),
                label=row.label,
                created_at=row.created_at,
            )
        )
    return CreatedSigningKey(key=key_for(master, key_id), row=row)


def create_signing_key(engine: sa.Engine, *, master: bytes, project_id: str | None, label: str | None = None) -> SigningKey:
    """A new key for `project_id` (None: an operator key); its token is shown only now."""
    return new_signing_key(engine, master=master, project_id=project_id, label=label).key


def list_signing_keys(engine: sa.Engine, *, project_id: str | None = None, limit: int | None = None, offset: int = 0) -> list[SigningKeyRow]:
    """Keys, newest first: all of them, or those of one project (never a secret); `limit` and
    `offset` page them."""
    t = signing_keys
    query = sa.select(t.c.key_id, t.c.project_id, t.c.label, t.c.created_at, t.c.revoked_at).order_by(t.c.created_at.desc(), t.c.key_id)
    if project_id is not None:
        query = query.where(t.c.project_id == project_id)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    with engine.connect() as connection:
        return [SigningKeyRow(**row._mapping) for row in connection.execute(query)]


def revoke_signing_key_at(engine: sa.Engine, key_id: str, *, project_id: str | None = None) -> datetime | None:
    """Revoke an active key (of `project_id` when given): when it was revoked, or None when
    there is no such active key. The processor refuses requests signed with it from its next
    batch on."""
    t = signing_keys
    query = (
        sa.update(t).where(t.c.key_id == key_id, t.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)).returning(t.c.revoked_at)
    )
    if project_id is not None:
        query = query.where(t.c.project_id == project_id)
    with engine.begin() as connection:
        return connection.execute(query).scalar_one_or_none()


def revoke_signing_key(engine: sa.Engine, key_id: str, *, project_id: str | None = None) -> bool:
    """Revoke an active key (of `project_id` when given); False when there is none."""
    return revoke_signing_key_at(engine, key_id, project_id=project_id) is not None


def tool_signing_key(settings: SigningSettings, *, database_url: str, label: str) -> SigningKey:
    """The key an operator's tool (demo, benchmark, fuzzer) signs with: CLOUDWALLET_SIGNING_KEY
    when given, else a new operator key (the operator holds the master signing secret)."""
    if settings.client_signing_key is not None:
        return settings.client_signing_key
    engine = sa.create_engine(database_url)
    try:
        return create_signing_key(engine, master=settings.master_secret(), project_id=None, label=label)
    finally:
        engine.dispose()
