"""Derived identifiers: deterministic, so a redelivered request produces the same ID.

An omitted project/asset/wallet ID is derived from (kind, project, reference ID) with
uuid5 and written as 26 lowercase base32 characters, which fits every client ID limit
(projects and assets allow 30 characters, so the 36-character UUID text form would not)
and the client ID pattern. Transaction IDs are never client-chosen and use the canonical
UUID text form.
"""

import base64
import hashlib
import uuid
from typing import Final, Literal

NAMESPACE: Final = uuid.UUID("3d4b8f36-9a0e-5c1a-9d1e-6b2f0c7a4e11")
_NAMESPACE_BYTES: Final = NAMESPACE.bytes

EntityKind = Literal["project", "asset", "wallet", "hold"]


def _uuid(kind: str, project_id: str, reference_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}:{project_id}:{reference_id}")


def derive_entity_id(*, kind: EntityKind, project_id: str, reference_id: str) -> str:
    """26-char ID for an entity created without a client-chosen ID.

    project_id is "" for a project (it has none yet).
    """
    raw = _uuid(kind, project_id, reference_id).bytes
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def derive_transaction_id(*, project_id: str, reference_id: str) -> str:
    """str(uuid5(NAMESPACE, "transaction:{project_id}:{reference_id}")), without the UUID
    object (one per transaction on the hot path; the unit tests check it is the same)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"transaction:{project_id}:{reference_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derive_hold_id(*, project_id: str, reference_id: str, operation_index: int) -> str:
    """The ID of a hold created without one: from its transaction's reference ID and the
    Hold operation's index (a hold.create is a transaction of one operation: index 0)."""
    return derive_entity_id(kind="hold", project_id=project_id, reference_id=f"{reference_id}#{operation_index}")
