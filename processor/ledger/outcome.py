"""What a batch produces: results plus a change set the storage layer writes in bulk."""

from dataclasses import dataclass, field
from datetime import datetime

from processor.ledger.state import Asset, AssetKey, Customer, CustomerKey, Hold, Metadata, Project, Wallet
from schemas.requests import Operation
from schemas.results import ErrorInfo, Result
from schemas.states import EntryType, Status


@dataclass(slots=True, kw_only=True)
class TransactionRecord:
    """A transaction.run that reached the ledger (Completed or Failed)."""

    project_id: str
    transaction_id: str
    reference_id: str
    description: str
    status: Status
    operations: list[Operation]
    error: ErrorInfo | None  # None when Completed
    created_at: datetime
    metadata: Metadata
    reverses: str | None = None  # the transaction this one reverses (transaction.reverse)


@dataclass(slots=True, kw_only=True)
class EntryRecord:
    """One wallet ledger entry; amounts in minor units."""

    project_id: str
    wallet_id: str
    transaction_id: str
    operation_index: int
    entry_type: EntryType
    amount: int  # > 0
    balance_after: int
    created_at: datetime
    available_after: int  # balance_after minus what Active holds reserve after the entry


@dataclass(slots=True, kw_only=True)
class ReferenceRecord:
    """A newly spent reference ID and the result to answer its repeats with."""

    project_id: str
    reference_id: str
    request_type: str
    result: Result


@dataclass(slots=True, kw_only=True)
class BatchOutcome:
    """Results in request order, and the net changes of the batch.

    Upserted entities are the final state of each changed entity, once each, in order of
    first change. An entity created and deleted within the batch appears in neither
    list; one deleted and re-created appears as an upsert. Entries are in posting order.
    """

    results: list[Result] = field(default_factory=list)
    projects_upserted: list[Project] = field(default_factory=list)
    assets_upserted: list[Asset] = field(default_factory=list)
    assets_deleted: list[AssetKey] = field(default_factory=list)
    customers_upserted: list[Customer] = field(default_factory=list)
    customers_deleted: list[CustomerKey] = field(default_factory=list)
    wallets_upserted: list[Wallet] = field(default_factory=list)
    holds_upserted: list[Hold] = field(default_factory=list)
    transactions: list[TransactionRecord] = field(default_factory=list)
    entries: list[EntryRecord] = field(default_factory=list)
    references: list[ReferenceRecord] = field(default_factory=list)
    # (request index, exception) of each request failed with InternalError: for the log.
    faults: list[tuple[int, Exception]] = field(default_factory=list)
