"""The in-memory state the storage layer loads for one batch.

Keys: a project by project_id; assets, customers and wallets by (project_id, id);
spent reference IDs by (project_id, reference_id). A key missing from its dict means
the entity does not exist: the loader guarantees it loaded everything the batch asks
for (see ``processor.ledger.state_keys.StateKeys`` for the loader contract).

The engine never mutates these objects or dicts: it copies on write.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeAlias

from schemas.requests import Operation
from schemas.results import Result
from schemas.states import CustomerStatus, HoldStatus, Status, WalletStatus

AssetKey: TypeAlias = tuple[str, str]  # (project_id, asset_id)
CustomerKey: TypeAlias = tuple[str, str]  # (project_id, customer_id)
WalletKey: TypeAlias = tuple[str, str]  # (project_id, wallet_id)
ReferenceKey: TypeAlias = tuple[str, str]  # (project_id, reference_id)
TransactionKey: TypeAlias = tuple[str, str]  # (project_id, transaction_id)
HoldKey: TypeAlias = tuple[str, str]  # (project_id, hold_id)
Metadata: TypeAlias = dict[str, str]  # the client's labels (schemas.requests.Metadata); never read by a rule

# The metadata of everything that has none: one shared dict, so that the common case costs no
# allocation. Never mutated, like everything here (metadata is replaced whole, never edited).
NO_METADATA: Final[Metadata] = {}


@dataclass(slots=True, kw_only=True)
class Project:
    project_id: str
    name: str
    created_at: datetime


@dataclass(slots=True, kw_only=True)
class Asset:
    project_id: str
    asset_id: str
    code: str
    name: str
    fractions: int  # power of ten; scale = log10(fractions)
    in_use: bool  # set when the first wallet with this asset opens; never cleared
    created_at: datetime

    @property
    def key(self) -> AssetKey:
        return (self.project_id, self.asset_id)


@dataclass(slots=True, kw_only=True)
class Customer:
    project_id: str
    customer_id: str
    name: str
    description: str
    status: CustomerStatus
    created_at: datetime
    metadata: Metadata

    @property
    def key(self) -> CustomerKey:
        return (self.project_id, self.customer_id)


@dataclass(slots=True, kw_only=True)
class Wallet:
    project_id: str
    wallet_id: str
    asset_id: str
    customer_id: str | None  # None: a system wallet
    name: str
    description: str
    status: WalletStatus
    balance: int  # minor units, 0 <= balance <= MAX_BALANCE_MINOR
    created_at: datetime
    held: int = 0  # minor units reserved by Active holds: 0 <= held <= balance (AVAILABLE_NOT_NEGATIVE)
    metadata: Metadata  # a new field must be copied by engine._with_amounts too (its hot-path copy)

    @property
    def key(self) -> WalletKey:
        return (self.project_id, self.wallet_id)


@dataclass(slots=True, frozen=True, kw_only=True)
class Hold:
    """An amount of one wallet reserved until it is captured, voided or expires."""

    project_id: str
    hold_id: str
    wallet_id: str
    to_wallet_id: str | None  # None: a capture redeems
    amount: int  # minor units, > 0
    captured: int | None  # minor units moved by the capture (Captured only)
    status: HoldStatus
    expires_at: datetime | None
    created_by: str  # transaction IDs
    finished_by: str | None
    created_at: datetime
    finished_at: datetime | None
    metadata: Metadata  # the metadata of the transaction that made it

    @property
    def key(self) -> HoldKey:
        return (self.project_id, self.hold_id)

    @property
    def wallet_key(self) -> WalletKey:
        return (self.project_id, self.wallet_id)


@dataclass(slots=True, frozen=True, kw_only=True)
class StoredTransaction:
    """A recorded transaction as a reversal needs it (transactions are history: never changed)."""

    project_id: str
    transaction_id: str
    status: Status
    operations: list[Operation]
    reverses: str | None  # set when it is itself a reversal
    reversed_by: str | None  # the Completed reversal of it, if any

    @property
    def key(self) -> TransactionKey:
        return (self.project_id, self.transaction_id)


@dataclass(slots=True, kw_only=True)
class LedgerState:
    """Everything one batch may read. See ``StateKeys`` for what must be loaded."""

    projects: dict[str, Project] = field(default_factory=dict)
    assets: dict[AssetKey, Asset] = field(default_factory=dict)
    customers: dict[CustomerKey, Customer] = field(default_factory=dict)
    wallets: dict[WalletKey, Wallet] = field(default_factory=dict)
    # For each customer in StateKeys.customers_with_wallets: the keys of all their
    # wallets (an empty list when they have none or do not exist).
    customer_wallets: dict[CustomerKey, list[WalletKey]] = field(default_factory=dict)
    # Results stored for reference IDs already spent.
    references: dict[ReferenceKey, Result] = field(default_factory=dict)
    # Transactions a reversal names (StateKeys.transaction_keys).
    transactions: dict[TransactionKey, StoredTransaction] = field(default_factory=dict)
    # The holds named by the batch (StateKeys.hold_keys), and every Active hold of each loaded
    # wallet with held > 0 (loader rule 8).
    holds: dict[HoldKey, Hold] = field(default_factory=dict)
