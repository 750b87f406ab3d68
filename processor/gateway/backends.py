"""What the gateway needs from the world, as narrow interfaces: its seams.

The routes never reach PostgreSQL or Kafka themselves: they use a `ReadStore` (reads.Reads), a
`KeyLookup` (keys.KeyStore), a `SigningKeyStorePort` (signing_key_store.SigningKeyStore) and a
`Publisher` (processor.client.WalletClient). `application.create_app` builds the real ones in
its lifespan, or takes `Backends` and a `Publisher` given to it: the unit tests pass fakes there,
so that every route runs in-process without Kafka or PostgreSQL and nothing is monkeypatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from processor.gateway.bodies import Page
from processor.gateway.api_keys import Principal
from processor.gateway.reads import MetadataFilter, Paging, Period
from processor.signing_keys import CreatedSigningKey
from schemas.requests import RequestModel
from schemas.results import AssetView, CustomerView, HoldView, ProjectView, Result, TransactionView, WalletView


class Publisher(Protocol):
    """Publishes a contract request and waits for its result (raises processor.client.ResultTimeout
    when none comes in time, aiokafka's KafkaError when Kafka cannot be reached)."""

    async def submit(self, request: RequestModel, *, timeout: float) -> Result: ...


class KeyLookup(Protocol):
    """Who an API key belongs to; None for no active key. Blocking (a worker thread calls it)."""

    def lookup(self, token: str) -> Principal | None: ...


class ReadStore(Protocol):
    """The reads the routes and the access check make; each is scoped to one project (or, for an
    operator's list of projects, to all). Blocking: called from worker threads."""

    def project_exists(self, project_id: str) -> bool: ...

    def get_project(self, project_id: str) -> ProjectView | None: ...

    def list_projects(self, paging: Paging, *, only: str | None = None) -> Page: ...

    def list_assets(self, project_id: str, paging: Paging) -> Page: ...

    def get_asset(self, project_id: str, asset_id: str) -> AssetView | None: ...

    def list_customers(self, project_id: str, paging: Paging) -> Page: ...

    def get_customer(self, project_id: str, customer_id: str) -> CustomerView | None: ...

    def get_wallet(self, project_id: str, wallet_id: str) -> WalletView | None: ...

    def list_wallets(self, project_id: str, *, customer_id: str | None, paging: Paging) -> Page: ...

    def wallet_entries(
        self, project_id: str, wallet_id: str, *, fractions: int, period: Period, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page: ...

    def balance_before(self, project_id: str, wallet_id: str, *, instant: datetime, inclusive: bool) -> tuple[int, int]: ...

    def get_hold(self, project_id: str, hold_id: str) -> HoldView | None: ...

    def list_wallet_holds(self, project_id: str, wallet_id: str, *, status: str | None, paging: Paging) -> Page: ...

    def list_transactions(
        self, project_id: str, *, period: Period, reference_id: str | None, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page: ...

    def get_transaction(self, project_id: str, transaction_id: str) -> TransactionView | None: ...

    def get_result(self, project_id: str, reference_id: str) -> Result | None: ...


class SigningKeyStorePort(Protocol):
    """A project's request signing keys (made from the master signing secret the route passes in)."""

    def create(self, *, master: bytes, project_id: str, label: str | None) -> CreatedSigningKey: ...

    def list(self, project_id: str, paging: Paging) -> Page: ...

    def revoke(self, project_id: str, key_id: str) -> datetime | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Backends:
    """The database side of the gateway: reads, API keys, signing keys (one engine's, in production)."""

    reads: ReadStore
    keys: KeyLookup
    signing_keys: SigningKeyStorePort
