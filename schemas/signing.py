"""Signed requests: the wall between tenants on the one shared requests topic.

Kafka's ACLs are per topic, so any principal allowed to write `wallet.requests` could write a
request for any project. Each request therefore carries an HMAC-SHA256 of its exact value bytes,
made with a signing key of the project it acts in (or an operator key, which may act in any
project and create projects), named in a header:

    signature_key_id: <key ID>          signature: <64 hex digits of HMAC-SHA256(secret, value)>

The processor checks the signature against the key's secret, that the key is not revoked and
that its scope covers the request's project before the ledger sees the request; otherwise it
answers `Failed / Unauthorized` and changes nothing (docs/security.md).

Secrets are never stored. A key's secret is derived from the deployment's master signing secret
(a file only the processor, the gateway and the operator's tools read) and the key's ID; the
database keeps the key's ID, scope, revocation and the SHA-256 of its secret, so a copy of the
database signs nothing. A client is given the key once, as a token `cws_<key ID>_<secret>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

KEY_ID_HEADER = "signature_key_id"
SIGNATURE_HEADER = "signature"
TOKEN_PREFIX = "cws_"
_DERIVATION_LABEL = b"cloudwallet signing key v1\x00"
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_TOKEN = re.compile(r"cws_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_SIGNATURE = re.compile(rb"[0-9a-f]{64}")
MIN_MASTER_BYTES = 32
# The ledger's own key: signs the hold.expire records the processor's sweep publishes
# (processor/stream/hold_sweep.py). Derived from the master secret like every key but kept in no
# table, and good for nothing else: a hold.expire only applies what the log decides anyway.
LEDGER_KEY_ID = "0" * 16
LEDGER_REQUEST_TYPES = frozenset({"hold.expire"})


class SigningError(ValueError):
    """A signing key or master secret that cannot be used; the message says what to fix."""


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    """A client's key: signs request values."""

    key_id: str
    secret: SecretStr  # URL-safe base64 of the 32-byte secret

    @classmethod
    def from_token(cls, token: str) -> SigningKey:
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise SigningError("a signing key is cws_<16 hex digits>_<43 URL-safe base64 characters>, as `cloudwallet signing-key create` printed it")
        return cls(key_id=match.group(1), secret=SecretStr(match.group(2)))

    def token(self) -> str:
        return f"{TOKEN_PREFIX}{self.key_id}_{self.secret.get_secret_value()}"

    def headers(self, value: bytes) -> list[tuple[str, bytes]]:
        """The two headers that sign `value` (the record's exact value bytes)."""
        return [(KEY_ID_HEADER, self.key_id.encode()), (SIGNATURE_HEADER, signature(_secret_bytes(self.secret), value).encode())]


def _secret_bytes(secret: SecretStr) -> bytes:
    return base64.urlsafe_b64decode(secret.get_secret_value() + "=")


def signature(secret: bytes, value: bytes) -> str:
    return hmac.new(secret, value, hashlib.sha256).hexdigest()


def new_key_id() -> str:
    while (key_id := secrets.token_hex(8)) == LEDGER_KEY_ID:  # 1 in 2**64, never the ledger's
        pass
    return key_id


def derive_secret(master: bytes, key_id: str) -> bytes:
    """The secret of key `key_id` under this master secret (never stored)."""
    if _KEY_ID.fullmatch(key_id) is None:
        raise SigningError(f"{key_id!r} is not a signing key ID")
    return hmac.new(master, _DERIVATION_LABEL + key_id.encode(), hashlib.sha256).digest()


def secret_sha256(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def key_for(master: bytes, key_id: str) -> SigningKey:
    text = base64.urlsafe_b64encode(derive_secret(master, key_id)).decode().rstrip("=")
    return SigningKey(key_id=key_id, secret=SecretStr(text))


def read_master(path: Path, *, setting: str = "CLOUDWALLET_SIGNING_MASTER_KEY_FILE") -> bytes:
    try:
        master = path.read_bytes().strip()
    except OSError as error:
        raise SigningError(f"{setting}: cannot read {path}: {error.strerror}") from None
    if len(master) < MIN_MASTER_BYTES:
        raise SigningError(f"{setting}: {path} holds {len(master)} bytes; a master signing secret has at least {MIN_MASTER_BYTES}")
    return master


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyScope:
    """A signing key as the database keeps it."""

    key_id: str
    project_id: str | None  # None: an operator key (any project, and project creation)
    revoked: bool
    secret_sha256: bytes


class Verifier:
    """Checks one record's signature; derived secrets are remembered (they never change)."""

    def __init__(self, *, master: bytes | None, required: bool) -> None:
        if required and master is None:
            raise SigningError("signatures are required (CLOUDWALLET_REQUIRE_SIGNATURES) but CLOUDWALLET_SIGNING_MASTER_KEY_FILE is not set")
        self.master = master
        self.required = required
        self._secrets: dict[str, bytes] = {}
        # The ledger's own key, in no table: its scope is known here, once.
        self._ledger_scope = (
            None if master is None
            else KeyScope(key_id=LEDGER_KEY_ID, project_id=None, revoked=False, secret_sha256=secret_sha256(derive_secret(master, LEDGER_KEY_ID)))
        )  # fmt: skip

    def refusal(
        self, *, value: bytes, key_id: bytes | None, signed: bytes | None, project_id: str | None, scope: KeyScope | None, request_type: str
    ) -> str | None:
        """Why this record may not act (None: it may). `scope` is the key named by `key_id`."""
        if key_id is None and signed is None:
            return "the request is not signed (signature_key_id and signature headers)" if self.required else None
        if key_id is None or signed is None:
            return "the request has only one of the signature_key_id and signature headers"
        if key_id == LEDGER_KEY_ID.encode() and self._ledger_scope is not None:
            if request_type not in LEDGER_REQUEST_TYPES:
                return f"signing key {LEDGER_KEY_ID} (the ledger's own) signs only {', '.join(sorted(LEDGER_REQUEST_TYPES))}"
            scope = self._ledger_scope
        if scope is None or self.master is None:
            return "the request is signed with an unknown signing key"
        if scope.revoked:
            return f"signing key {scope.key_id} is revoked"
        secret = self._secret(scope)
        if secret is None:
            return f"signing key {scope.key_id} was not made with this deployment's master signing secret"
        if _SIGNATURE.fullmatch(signed) is None or not hmac.compare_digest(signed.decode(), signature(secret, value)):
            return "the signature does not match the request's bytes"
        if scope.project_id is not None and scope.project_id != project_id:
            return f"signing key {scope.key_id} may not act in this project"
        return None

    def ledger_key(self) -> SigningKey | None:
        """The key the processor signs its own requests with (None without a master secret)."""
        return None if self.master is None else key_for(self.master, LEDGER_KEY_ID)

    def _secret(self, scope: KeyScope) -> bytes | None:
        secret = self._secrets.get(scope.key_id)
        if secret is None:
            assert self.master is not None
            secret = derive_secret(self.master, scope.key_id)
            if not hmac.compare_digest(secret_sha256(secret), scope.secret_sha256):
                return None
            if len(self._secrets) > 100_000:  # a bound on everything
                self._secrets.clear()
            self._secrets[scope.key_id] = secret
        return secret


def key_id_of(raw: bytes | None) -> str | None:
    """A header value that can name a key, as text (None for anything else)."""
    if raw is None or _KEY_ID.fullmatch(raw.decode("ascii", "replace")) is None:
        return None
    return raw.decode("ascii")
