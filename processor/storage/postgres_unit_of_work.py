"""The unit of work on PostgreSQL: one transaction per batch.

It loads (and locks) the state a batch needs, writes the engine's output in bulk
(processor/storage/writing.py), and stores the consumer offsets in the same transaction, so
state and offsets commit together. The service sees it through its port
(processor/service/unit_of_work.py) and is handed a factory of it from outside.

Lock order, the same in every batch so that concurrent processors never deadlock on it:
projects -> assets -> customers -> wallets, each in sorted key order, one statement per table.
(Transactions and holds are read, never locked: a hold changes only under its wallet's lock.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from processor.ledger.outcome import BatchOutcome
from processor.ledger.state import NO_METADATA, Asset, Customer, Hold, HoldKey, LedgerState, Project, ReferenceKey, StoredTransaction, TransactionKey
from processor.ledger.state import Wallet, WalletKey
from processor.ledger.state_keys import StateKeys, operation_wallet_ids
from processor.storage import tables as m
from processor.storage.driver import fetch, keys_in, pairs
from processor.storage.sources import Offsets, Source, Spender
from processor.storage.statements import (
    LOCK_WALLETS,
    SELECT_ASSETS,
    SELECT_HOLD_WALLETS,
    SELECT_HOLDS,
    SELECT_OFFSETS,
    SELECT_PROJECTS,
    SELECT_REFERENCES,
    SELECT_SIGNING_KEYS,
    SELECT_TRANSACTIONS,
    UPSERT_OFFSETS,
)
from processor.storage.writing import BatchWriter, StoredResults
from schemas.results import Result
from schemas.signing import KeyScope
from schemas.states import CustomerStatus, HoldStatus, Status, WalletStatus

WALLET_STATUS = {status.value: status for status in WalletStatus}
HOLD_STATUS = {status.value: status for status in HoldStatus}
REPLAN_EVERY_S = 5.0


def _to_customer(row: sa.Row[Any]) -> Customer:
    return Customer(
        project_id=row.project_id,
        customer_id=row.customer_id,
        name=row.name or "",
        description=row.description or "",
        status=CustomerStatus(row.status),
        created_at=row.created_at,
        metadata=row.metadata or NO_METADATA,
    )


class PostgresUnitOfWork:
    """`with PostgresUnitOfWork(engine) as uow: ...; uow.commit()`; leaving without commit rolls back."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._connection: sa.Connection | None = None
        # For each spent reference loaded: the (topic, partition, offset) of the record that spent
        # it, and the fingerprint of that record's value (rows from before revision 0003 have none).
        self.reference_sources: dict[ReferenceKey, Source] = {}
        self.reference_hashes: dict[ReferenceKey, bytes] = {}
        self._loaded_wallets: Mapping[tuple[str, str], Wallet] = {}

    def __enter__(self) -> PostgresUnitOfWork:
        self._connection = self._engine.connect()
        self._connection.begin()
        self._refresh_plans()
        return self

    def _refresh_plans(self) -> None:
        """Re-plan this connection's cached statements every REPLAN_EVERY_S seconds.

        PostgreSQL keeps a session's plans, the foreign-key checks' included, until the
        statistics of their tables change. Plans made while a table was tiny (a new
        database filling up, before autovacuum's first ANALYZE) stay tiny-table plans while it
        grows, and a batch's foreign-key checks got ~5x slower. DISCARD PLANS is cheap: the
        next use plans again against the table's current size.
        """
        info = self.connection.connection.info
        now = time.monotonic()
        if now - info.get("plans_refreshed_at", -REPLAN_EVERY_S) >= REPLAN_EVERY_S:
            info["plans_refreshed_at"] = now
            self.connection.exec_driver_sql("DISCARD PLANS")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._connection is not None
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None

    @property
    def connection(self) -> sa.Connection:
        assert self._connection is not None, "use the unit of work inside `with`"
        return self._connection

    def commit(self) -> None:
        self.connection.commit()

    # ------------------------------------------------------------------------------- loading

    def load_state(self, keys: StateKeys) -> LedgerState:
        """Load everything the batch's keys ask for, locking in the global lock order
        (the loader contract: processor/ledger/state_keys.py)."""
        state = LedgerState()
        if keys.project_ids:
            self._load_projects(keys, state)
        if keys.asset_keys:
            if keys.locked_asset_keys:
                self._lock(m.assets, "asset_id", keys.locked_asset_keys)
            state.assets.update(self._select_assets(keys.asset_keys))
        if keys.customer_keys:
            if keys.locked_customer_keys:
                self._lock(m.customers, "customer_id", keys.locked_customer_keys)
            self._select_customers(keys.customer_keys, state, name="customers")
        # Rule 7: a reversal's wallets are its original's, known once the original is read.
        also = self._load_transactions(keys.transaction_keys, state) if keys.transaction_keys else set()
        # Rule 8: a Capture's or Void's wallets are its hold's.
        if keys.hold_keys:
            also |= self._hold_wallets(keys.hold_keys)
        if keys.wallet_keys or keys.customers_with_wallets or also:
            self._lock_wallets(keys, state, also=also)
            self._load_wallet_assets_and_owners(state, owners=keys.wallet_owners)
        holding = [key for key, wallet in state.wallets.items() if wallet.held]
        if keys.hold_keys or holding:
            self._load_holds(keys.hold_keys, sorted(holding), state)
        if keys.reference_keys:
            state.references.update(self.load_references(keys.reference_keys))
        self._loaded_wallets = state.wallets
        return state

    def _load_projects(self, keys: StateKeys, state: LedgerState) -> None:
        if keys.locked_project_ids:
            # Locking every project a batch touches would serialize a whole project; only
            # project writes lock (reads need the name and existence, neither of which a
            # concurrent batch can take away: projects are never deleted).
            self.connection.execute(
                sa.select(m.projects.c.project_id)
                .where(m.projects.c.project_id.in_(keys.locked_project_ids))
                .order_by(m.projects.c.project_id)
                .with_for_update()
            )
        for project_id, name, created_at in fetch(self.connection, SELECT_PROJECTS, [list(keys.project_ids)]):
            state.projects[project_id] = Project(project_id=project_id, name=name, created_at=created_at)

    def _select_customers(self, keys: Sequence[tuple[str, str]], state: LedgerState, *, name: str) -> None:
        for row in self.connection.execute(sa.select(m.customers).where(keys_in(m.customers, "project_id", "customer_id", keys, name))):
            state.customers[(row.project_id, row.customer_id)] = _to_customer(row)

    def _load_transactions(self, keys: Sequence[TransactionKey], state: LedgerState) -> set[WalletKey]:
        """The transactions a reversal names (not locked: statements.SELECT_TRANSACTIONS says
        why), and the keys of the wallets their operations touch."""
        wallets: set[WalletKey] = set()
        for project_id, transaction_id, status, operations, reverses, reversed_by in fetch(self.connection, SELECT_TRANSACTIONS, pairs(keys)):
            parsed = m.OPERATIONS_JSON.validate_python(operations)
            state.transactions[(project_id, transaction_id)] = StoredTransaction(
                project_id=project_id, transaction_id=transaction_id, status=Status(status), operations=parsed, reverses=reverses, reversed_by=reversed_by
            )
            wallets.update((project_id, wallet_id) for wallet_id in operation_wallet_ids(parsed))
        return wallets

    def _hold_wallets(self, keys: Sequence[HoldKey]) -> set[WalletKey]:
        wallets: set[WalletKey] = set()
        for project_id, wallet_id, to_wallet_id in fetch(self.connection, SELECT_HOLD_WALLETS, pairs(keys)):
            wallets.add((project_id, wallet_id))
            if to_wallet_id is not None:
                wallets.add((project_id, to_wallet_id))
        return wallets

    def _load_holds(self, named: Sequence[HoldKey], holding: Sequence[WalletKey], state: LedgerState) -> None:
        """The named holds and the Active holds of the (locked) wallets with held > 0, read after
        the wallet locks: a hold changes only under its wallet's lock. A named hold whose wallets
        were not locked was made by another batch between `_hold_wallets` and the lock: it is left
        out, as in that earlier read (HoldNotFound, and the client may try again)."""
        wallets, asked = state.wallets, set(named)
        for row in fetch(self.connection, SELECT_HOLDS, [*pairs(named), *pairs(holding)]):
            project_id, hold_id, wallet_id, to_wallet_id, amount, captured, status, expires_at, created_by, finished_by, created_at, finished_at, metadata = row
            destination_missing = (project_id, hold_id) in asked and to_wallet_id is not None and (project_id, to_wallet_id) not in wallets
            if (project_id, wallet_id) not in wallets or destination_missing:
                continue
            state.holds[(project_id, hold_id)] = Hold(
                project_id=project_id, hold_id=hold_id, wallet_id=wallet_id, to_wallet_id=to_wallet_id, amount=int(amount),
                captured=None if captured is None else int(captured), status=HOLD_STATUS[status], expires_at=expires_at,
                created_by=created_by, finished_by=finished_by, created_at=created_at, finished_at=finished_at, metadata=metadata or NO_METADATA,
            )  # fmt: skip

    def _lock_wallets(self, keys: StateKeys, state: LedgerState, *, also: set[WalletKey]) -> None:
        """Every wallet a batch touches, locked in sorted order in this one statement; straight
        through psycopg (the hot path's biggest read), balances made exact ints (never floats)."""
        conditions, params = [], []
        wallet_keys = sorted(also.union(keys.wallet_keys)) if also else keys.wallet_keys
        if wallet_keys:
            conditions.append("(project_id, wallet_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))")
            params += pairs(wallet_keys)
        if keys.customers_with_wallets:
            conditions.append("(project_id, customer_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))")
            params += pairs(keys.customers_with_wallets)
        wallets = state.wallets
        rows = fetch(self.connection, LOCK_WALLETS.format(condition=" OR ".join(conditions)), params)
        # metadata: NULL when empty (statements.STORED_METADATA), then the one shared empty dict.
        for project_id, wallet_id, asset_id, customer_id, name, description, status, balance, held, created_at, metadata in rows:
            wallets[(project_id, wallet_id)] = Wallet(
                project_id=project_id,
                wallet_id=wallet_id,
                asset_id=asset_id,
                customer_id=customer_id,
                name=name or "",
                description=description or "",
                status=WALLET_STATUS[status],
                balance=int(balance),
                created_at=created_at,
                held=int(held),
                metadata=metadata or NO_METADATA,
            )
        for customer_key in keys.customers_with_wallets:
            state.customer_wallets[customer_key] = []
        for wallet in wallets.values():
            if wallet.customer_id is not None:
                owner = (wallet.project_id, wallet.customer_id)
                if owner in state.customer_wallets:
                    state.customer_wallets[owner].append(wallet.key)

    def load_references(self, keys: Sequence[ReferenceKey]) -> dict[ReferenceKey, Result]:
        """The stored result of each spent reference among `keys`, noting who spent it."""
        found: dict[ReferenceKey, Result] = {}
        for project_id, reference_id, result, topic, partition, offset, request_hash in fetch(self.connection, SELECT_REFERENCES, pairs(keys)):
            key = (project_id, reference_id)
            found[key] = Result.model_validate(result)
            if topic is not None:
                self.reference_sources[key] = (topic, partition, offset)
            if request_hash is not None:
                self.reference_hashes[key] = bytes(request_hash)
        return found

    def _select_assets(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Asset]:
        return {
            (project_id, asset_id): Asset(
                project_id=project_id, asset_id=asset_id, code=code, name=name, fractions=fractions, in_use=in_use, created_at=created_at
            )
            for project_id, asset_id, code, name, fractions, in_use, created_at in fetch(self.connection, SELECT_ASSETS, pairs(keys))
        }

    def _lock(self, table: sa.Table, id_column: str, keys: Sequence[tuple[str, str]]) -> None:
        self.connection.execute(
            sa.select(table.c.project_id, table.c[id_column])
            .where(keys_in(table, "project_id", id_column, keys, f"lock_{table.name}"))
            .order_by(table.c.project_id, table.c[id_column])
            .with_for_update()
        )

    def _load_wallet_assets_and_owners(self, state: LedgerState, *, owners: bool = True) -> None:
        """Rules 2 and 3 of the loader contract: each loaded wallet's asset and (when the
        batch needs them) owner."""
        missing_assets = sorted({(w.project_id, w.asset_id) for w in state.wallets.values()} - state.assets.keys())
        if missing_assets:
            state.assets.update(self._select_assets(missing_assets))
        if not owners:
            return
        missing_owners = sorted(
            {(w.project_id, w.customer_id) for w in state.wallets.values() if w.customer_id is not None} - state.customers.keys()
        )
        if missing_owners:
            self._select_customers(missing_owners, state, name="wallet_owners")

    # ------------------------------------------------------------------------------- writing

    def write(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> StoredResults:
        """The batch's change set (processor/storage/writing.py)."""
        return BatchWriter(connection=self.connection, loaded_wallets=self._loaded_wallets).write(outcome, spenders=spenders, now=now)

    # ------------------------------------------------------------------------ record answers

    def load_record_answers(self, sources: Sequence[Source]) -> dict[Source, Result]:
        """The stored answers of records evaluated before without spending their reference."""
        t = m.record_answers
        query = sa.select(t.c.source_topic, t.c.source_partition, t.c.source_offset, t.c.result).where(
            sa.tuple_(t.c.source_topic, t.c.source_partition, t.c.source_offset).in_(sources)
        )
        return {(row.source_topic, row.source_partition, row.source_offset): Result.model_validate(row.result) for row in self.connection.execute(query)}

    def load_signing_keys(self, key_ids: Sequence[str]) -> dict[str, KeyScope]:
        """The signing keys named by a batch (read in its transaction: a revocation counts at once)."""
        if not key_ids:
            return {}
        return {
            key_id: KeyScope(key_id=key_id, project_id=project_id, revoked=revoked_at is not None, secret_sha256=bytes(secret_sha256))
            for key_id, project_id, revoked_at, secret_sha256 in fetch(self.connection, SELECT_SIGNING_KEYS, [list(key_ids)])
        }

    def store_record_answers(self, answers: Sequence[tuple[Source, Result]], *, now: datetime) -> None:
        if answers:
            rows = [
                {"source_topic": s[0], "source_partition": s[1], "source_offset": s[2], "result": r.model_dump(mode="json"), "created_at": now}
                for s, r in answers
            ]
            self.connection.execute(sa.insert(m.record_answers), rows)

    # ------------------------------------------------------------------------------- offsets

    def store_offsets(self, *, consumer_group: str, offsets: Offsets, now: datetime) -> None:
        if not offsets:
            return
        ordered = sorted(offsets.items())
        topics = [topic for (topic, _), _ in ordered]
        partitions = [partition for (_, partition), _ in ordered]
        positions = [offset for _, offset in ordered]
        fetch(self.connection, UPSERT_OFFSETS, [consumer_group, now, topics, partitions, positions])

    def load_offsets(self, *, consumer_group: str, topic: str) -> dict[int, int]:
        return {partition: offset for partition, offset in fetch(self.connection, SELECT_OFFSETS, [consumer_group, topic])}
