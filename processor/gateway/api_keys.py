"""API keys: random tokens, stored only as their SHA-256.

A key is `cwk_` + 43 URL-safe characters (32 random bytes). Only its SHA-256 is stored, so a
leaked table does not leak keys; the token itself is shown once, when it is created.

Kinds:
* operator - every project; the only kind that may create projects or list all of them;
* project  - one project: every read and write inside it;
* customer - read-only, one customer of one project: their wallets and those wallets' entries.

The table is defined with the others in processor/storage/tables.py; migration
`0002_api_keys` creates it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa

from processor.storage.tables import api_keys
from schemas.limits import ID_PATTERN, MAX_CUSTOMER_ID_LEN, MAX_PROJECT_ID_LEN

TOKEN_PREFIX = "cwk_"
MAX_TOKEN_LEN = 200  # anything longer is not one of ours and is refused before hashing



class KeyKind(StrEnum):
    operator = "operator"
    project = "project"
    customer = "customer"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: the key's kind and scope."""

    key_id: str
    kind: KeyKind
    project_id: str | None = None
    customer_id: str | None = None

    def may_access_project(self, project_id: str) -> bool:
        return self.kind is KeyKind.operator or self.project_id == project_id


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedKey:
    key_id: str
    token: str  # shown once; never stored
    principal: Principal


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _check_scope(kind: KeyKind, project_id: str | None, customer_id: str | None) -> None:
    if kind is KeyKind.operator and (project_id or customer_id):
        raise ValueError("an operator key has no --project or --customer")
    if kind in (KeyKind.project, KeyKind.customer):
        if not project_id:
            raise ValueError(f"a {kind} key needs --project")
        if len(project_id) > MAX_PROJECT_ID_LEN or not re.fullmatch(ID_PATTERN, project_id):
            raise ValueError(f"--project {project_id!r} is not a valid project ID")
    if kind is KeyKind.project and customer_id:
        raise ValueError("a project key has no --customer")
    if kind is KeyKind.customer:
        if not customer_id:
            raise ValueError("a customer key needs --customer")
        if len(customer_id) > MAX_CUSTOMER_ID_LEN or not customer_id.isprintable() or customer_id.isspace():
            raise ValueError(f"--customer {customer_id!r} is not a valid customer ID")


def create_key(
    engine: sa.Engine,
    *,
    kind: KeyKind | str,
    project_id: str | None = None,
    customer_id: str | None = None,
    label: str | None = None,
) -> CreatedKey:
    """Create a key; the returned token is the only copy there will ever be."""
    kind = KeyKind(kind)
    _check_scope(kind, project_id, customer_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key_id = secrets.token_hex(8)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(api_keys).values(
                key_id=key_id,
                key_hash=hash_token(token),
                kind=kind.value,
                project_id=project_id,
                customer_id=customer_id,
                label=label,
                created_at=datetime.now(UTC),
            )
        )
    principal = Principal(key_id=key_id, kind=kind, project_id=project_id, customer_id=customer_id)
    return CreatedKey(key_id=key_id, token=token, principal=principal)


def revoke_key(engine: sa.Engine, key_id: str) -> bool:
    """Revoke a key by its ID; False if there is no such active key."""
    with engine.begin() as connection:
        done = connection.execute(
            sa.update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return done.rowcount == 1


def list_keys(engine: sa.Engine) -> list[sa.Row]:
    query = sa.select(
        api_keys.c.key_id,
        api_keys.c.kind,
        api_keys.c.project_id,
        api_keys.c.customer_id,
        api_keys.c.label,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).order_by(api_keys.c.created_at, api_keys.c.key_id)
    with engine.connect() as connection:
        return list(connection.execute(query))


class KeyStore:
    """Looks keys up by hash, remembering verified ones for `cache_seconds`."""

    MAX_CACHED = 10_000

    def __init__(self, engine: sa.Engine, *, cache_seconds: float = 5.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str) -> Principal | None:
        """The principal of an active key, or None. Blocking: call it from a worker thread."""
        if not token or len(token) > MAX_TOKEN_LEN:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        if self.cache_seconds > 0:
            with self._lock:
                cached = self._cache.get(digest)
            if cached is not None and cached[1] > now:
                return cached[0]
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(api_keys.c.key_id, api_keys.c.kind, api_keys.c.project_id, api_keys.c.customer_id).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None:
            return None
        principal = Principal(key_id=row.key_id, kind=KeyKind(row.kind), project_id=row.project_id, customer_id=row.customer_id)
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= self.MAX_CACHED:
                    self._cache.clear()
                self._cache[digest] = (principal, now + self.cache_seconds)
        return principal
