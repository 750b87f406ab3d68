"""A dict-based stand-in for the storage layer: loads state per the loader contract in
``processor.ledger.state_keys`` and applies a ``BatchOutcome`` the way storage writes it."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from processor.ledger import (
    Asset,
    BatchOutcome,
    Customer,
    EntryRecord,
    Hold,
    LedgerState,
    Project,
    TransactionRecord,
    StateKeys,
    Wallet,
    apply_batch,
    state_keys,
)
from processor.ledger.state import StoredTransaction
from processor.ledger.state_keys import operation_wallet_ids
from schemas.requests import RequestAdapter, RequestModel
from schemas.states import Status
from schemas.results import Result

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def req(**fields: Any) -> RequestModel:
    """Validate a request from keyword fields (``type=...`` included)."""
    return RequestAdapter.validate_python(fields)


@dataclass
class MemoryStore:
    projects: dict[str, Project] = field(default_factory=dict)
    assets: dict[tuple[str, str], Asset] = field(default_factory=dict)
    customers: dict[tuple[str, str], Customer] = field(default_factory=dict)
    wallets: dict[tuple[str, str], Wallet] = field(default_factory=dict)
    references: dict[tuple[str, str], Result] = field(default_factory=dict)
    transactions: dict[tuple[str, str], TransactionRecord] = field(default_factory=dict)
    entries: list[EntryRecord] = field(default_factory=list)
    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)
    clock: datetime = T0

    def load(self, requests: list[RequestModel]) -> LedgerState:
        return self.load_keys(state_keys(requests))

    def load_keys(self, keys: StateKeys) -> LedgerState:
        """What the loader contract (processor/ledger/state_keys.py) says storage loads."""
        state = LedgerState()
        for pid in keys.project_ids:
            if pid in self.projects:
                state.projects[pid] = self.projects[pid]
        for key in keys.asset_keys:
            if key in self.assets:
                state.assets[key] = self.assets[key]
        for key in keys.customer_keys:
            if key in self.customers:
                state.customers[key] = self.customers[key]
        for key in keys.customers_with_wallets:
            owned = sorted(k for k, w in self.wallets.items() if (w.project_id, w.customer_id) == key)
            state.customer_wallets[key] = owned
            for wkey in owned:
                state.wallets[wkey] = self.wallets[wkey]
        for key in keys.wallet_keys:
            if key in self.wallets:
                state.wallets[key] = self.wallets[key]
        for key in keys.transaction_keys:  # rule 7: the transaction, and every wallet it touched
            record = self.transactions.get(key)
            if record is None:
                continue
            state.transactions[key] = self.stored_transaction(record)
            for wallet_id in operation_wallet_ids(record.operations):
                if (key[0], wallet_id) in self.wallets:
                    state.wallets[(key[0], wallet_id)] = self.wallets[(key[0], wallet_id)]
        for key in keys.hold_keys:  # rule 8: the named holds and their wallets
            hold = self.holds.get(key)
            if hold is None:
                continue
            state.holds[key] = hold
            for wallet_id in (hold.wallet_id, hold.to_wallet_id):
                if wallet_id is not None:
                    state.wallets[(key[0], wallet_id)] = self.wallets[(key[0], wallet_id)]
        for hold in self.holds.values():  # ... and the Active holds of every loaded wallet with held > 0
            wallet = state.wallets.get(hold.wallet_key)
            if wallet is not None and wallet.held > 0 and hold.status == "Active":
                state.holds[hold.key] = hold
        for wallet in list(state.wallets.values()):  # joins: each wallet's asset and owner
            state.assets[(wallet.project_id, wallet.asset_id)] = self.assets[(wallet.project_id, wallet.asset_id)]
            if wallet.customer_id is not None and keys.wallet_owners:
                owner = self.customers.get((wallet.project_id, wallet.customer_id))
                if owner is not None:
                    state.customers[owner.project_id, owner.customer_id] = owner
        for key in keys.reference_keys:
            if key in self.references:
                state.references[key] = self.references[key]
        return state

    def stored_transaction(self, record: TransactionRecord) -> StoredTransaction:
        reversed_by = next(
            (t.transaction_id for t in self.transactions.values()
             if t.reverses == record.transaction_id and t.project_id == record.project_id and t.status == Status.Completed),
            None,
        )
        return StoredTransaction(
            project_id=record.project_id, transaction_id=record.transaction_id, status=record.status, operations=list(record.operations),
            reverses=record.reverses, reversed_by=reversed_by,
        )

    def write(self, outcome: BatchOutcome) -> None:
        for project in outcome.projects_upserted:
            self.projects[project.project_id] = project
        for key in outcome.assets_deleted:
            del self.assets[key]
        for asset in outcome.assets_upserted:
            self.assets[asset.key] = asset
        for key in outcome.customers_deleted:
            del self.customers[key]
        for customer in outcome.customers_upserted:
            self.customers[customer.key] = customer
        for wallet in outcome.wallets_upserted:
            self.wallets[wallet.key] = wallet
        for tx in outcome.transactions:
            key = (tx.project_id, tx.transaction_id)
            assert key not in self.transactions, "transaction IDs are unique"
            self.transactions[key] = tx
        self.entries.extend(outcome.entries)
        for hold in outcome.holds_upserted:
            self.holds[hold.key] = hold
        for ref in outcome.references:
            key = (ref.project_id, ref.reference_id)
            assert key not in self.references, "a reference is spent once"
            self.references[key] = ref.result

    def run(self, requests: list[RequestModel], *, log_times: list[datetime | None] | None = None) -> list[Result]:
        self.clock += timedelta(seconds=1)
        state = self.load(requests)
        outcome = apply_batch(requests=requests, state=state, now=self.clock, log_times=log_times)
        assert len(outcome.results) == len(requests)
        self.write(outcome)
        return outcome.results

    def run1(self, **fields: Any) -> Result:
        return self.run([req(**fields)])[0]

    def balance(self, project_id: str, wallet_id: str) -> int:
        return self.wallets[(project_id, wallet_id)].balance
