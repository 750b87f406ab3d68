"""The unit of work: one PostgreSQL transaction per batch.

It loads (and locks) the state a batch needs, writes the engine's output in bulk, and stores
the consumer offsets in the same transaction, so state and offsets commit together.

Lock order, the same in every batch so that concurrent processors never deadlock on it:
projects -> assets -> customers -> wallets, each in sorted key order, one statement per table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
import time
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg
import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import insert as pg_insert

from processor.ledger.state_keys import StateKeys
from processor.ledger.outcome import BatchOutcome
from processor.ledger.state import Asset, Customer, LedgerState, Project, Wallet
from schemas.signing import KeyScope
from processor.storage import tables as m
from schemas.requests import Operation
from schemas.results import Result
from schemas.states import CustomerStatus, WalletStatus

# (topic, partition) -> the next offset to consume
Offsets = Mapping[tuple[str, int], int]
# (topic, partition, offset) of a Kafka record
Source = tuple[str, int, int]
# The record that spends a reference, and the SHA-256 of its value
Spender = tuple[Source, bytes]
ReferenceKey = tuple[str, str]

ENTRY_COLUMNS = (
    "project_id",
    "wallet_id",
    "transaction_id",
    "operation_index",
    "entry_type",
    "amount",
    "balance_after",
    "created_at",
)

# The hot-path writes go straight to psycopg: one statement or one COPY per table and batch
# (executemany would be a statement per row, and SQLAlchemy's per-row parameter handling).
UPDATE_BALANCES = (
    "UPDATE wallets AS w SET balance = v.balance::numeric, updated_at = %b "
    "FROM unnest(%b::text[], %b::text[], %b::text[]) AS v(project_id, wallet_id, balance) "
    "WHERE w.project_id = v.project_id AND w.wallet_id = v.wallet_id"
)
UPSERT_WALLETS = (
    "INSERT INTO wallets (project_id, wallet_id, asset_id, customer_id, name, description, status, balance, created_at, updated_at) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]::numeric[], "
    "%b::timestamptz[], %b::timestamptz[]) "
    "ON CONFLICT (project_id, wallet_id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, "
    "status = EXCLUDED.status, balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at"
)
COPY_TRANSACTIONS = (
    "COPY transactions (project_id, transaction_id, reference_id, description, status, operations, error_code, error_message, "
    "failed_operation_index, created_at) FROM STDIN"
)
COPY_ENTRIES = f"COPY wallet_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
COPY_REFERENCES = (
    "COPY processed_requests (project_id, reference_id, request_type, result, source_topic, source_partition, source_offset, "
    "request_hash, created_at) "
    "FROM STDIN"
)
# The batch's other per-batch reads and the offsets' upsert, straight through psycopg too: built
# through SQLAlchemy, each cost ~0.5 ms of Python per batch (a new statement, its cache key, its
# compiled form), most of a small batch's time.
SELECT_PROJECTS = "SELECT project_id, name, created_at FROM projects WHERE project_id = ANY(%b::text[]) ORDER BY project_id"
SELECT_ASSETS = (
    "SELECT project_id, asset_id, code, name, fractions, in_use, created_at FROM assets "
    "WHERE (project_id, asset_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
SELECT_REFERENCES = (
    "SELECT project_id, reference_id, result, source_topic, source_partition, source_offset, request_hash FROM processed_requests "
    "WHERE (project_id, reference_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
SELECT_SIGNING_KEYS = "SELECT key_id, project_id, revoked_at, secret_sha256 FROM signing_keys WHERE key_id = ANY(%b::text[])"
SELECT_OFFSETS = "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %b AND topic = %b"
# A redelivered (older) batch never moves the stored position back.
UPSERT_OFFSETS = (
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at) "
    "SELECT %b, t, p, o, %b FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS v(t, p, o) "
    "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET "
    "next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = EXCLUDED.updated_at"
)
LOCK_WALLETS = (
    "SELECT project_id, wallet_id, asset_id, customer_id, name, description, status, balance, created_at FROM wallets "
    "WHERE {condition} ORDER BY project_id, wallet_id FOR UPDATE"
)
WALLET_STATUS = {status.value: status for status in WalletStatus}
REPLAN_EVERY_S = 5.0
_OPERATIONS: TypeAdapter[list[Operation]] = TypeAdapter(list[Operation])


def _pairs(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    firsts: list[str] = []
    seconds: list[str] = []
    for first, second in keys:
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def _keys_in(table: sa.Table, first: str, second: str, keys: Sequence[tuple[str, str]], name: str) -> sa.ColumnElement[bool]:
    """(first, second) IN (the given pairs), bound as two arrays: one statement for any count."""
    firsts, seconds = _pairs(keys)
    unnest = sa.func.unnest(
        sa.bindparam(f"{name}_a", firsts, type_=sa.ARRAY(sa.Text)),
        sa.bindparam(f"{name}_b", seconds, type_=sa.ARRAY(sa.Text)),
    ).table_valued("a", "b").render_derived(name=f"{name}_pairs")
    return sa.tuple_(table.c[first], table.c[second]).in_(sa.select(unnest.c.a, unnest.c.b))


def _to_customer(row: sa.Row[Any]) -> Customer:
    return Customer(
        project_id=row.project_id,
        customer_id=row.customer_id,
        name=row.name or "",
        description=row.description or "",
        status=CustomerStatus(row.status),
        created_at=row.created_at,
    )


class UnitOfWork:
    """`with UnitOfWork(engine) as uow: ...; uow.commit()`; leaving without commit rolls back."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._connection: sa.Connection | None = None
        # For each spent reference loaded: the (topic, partition, offset) of the record that spent
        # it, and the fingerprint of that record's value (rows from before revision 0003 have none).
        self.reference_sources: dict[ReferenceKey, Source] = {}
        self.reference_hashes: dict[ReferenceKey, bytes] = {}
        # id(result) -> its JSON as written to processed_requests, for publishing the same bytes.
        self.result_json: dict[int, str] = {}
        self._loaded_wallets: Mapping[tuple[str, str], Wallet] = {}

    def __enter__(self) -> UnitOfWork:
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
        """Load everything the batch's keys ask for, locking in the global lock order."""
        c = self.connection
        state = LedgerState()

        if keys.project_ids:
            if keys.locked_project_ids:
                # Locking every project a batch touches would serialize a whole project; only
                # project writes lock (reads need the name and existence, neither of which a
                # concurrent batch can take away: projects are never deleted).
                c.execute(
                    sa.select(m.projects.c.project_id)
                    .where(m.projects.c.project_id.in_(keys.locked_project_ids))
                    .order_by(m.projects.c.project_id)
                    .with_for_update()
                )
            for project_id, name, created_at in self._fetch(SELECT_PROJECTS, [list(keys.project_ids)]):
                state.projects[project_id] = Project(project_id=project_id, name=name, created_at=created_at)

        if keys.asset_keys:
            if keys.locked_asset_keys:
                self._lock(m.assets, "asset_id", keys.locked_asset_keys)
            state.assets.update(self._select_assets(keys.asset_keys))

        if keys.customer_keys:
            if keys.locked_customer_keys:
                self._lock(m.customers, "customer_id", keys.locked_customer_keys)
            for row in c.execute(
                sa.select(m.customers).where(_keys_in(m.customers, "project_id", "customer_id", keys.customer_keys, "customers"))
            ):
                state.customers[(row.project_id, row.customer_id)] = _to_customer(row)

        if keys.wallet_keys or keys.customers_with_wallets:
            # Every wallet a batch touches is locked, in sorted order, in this one statement.
            # Straight through psycopg: the hot path's biggest read, and balances come back as
            # exact Decimals, made ints here (never floats).
            conditions, params = [], []
            if keys.wallet_keys:
                conditions.append("(project_id, wallet_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))")
                params += _pairs(keys.wallet_keys)
            if keys.customers_with_wallets:
                conditions.append("(project_id, customer_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))")
                params += _pairs(keys.customers_with_wallets)
            wallets = state.wallets
            rows = self._fetch(LOCK_WALLETS.format(condition=" OR ".join(conditions)), params)
            for project_id, wallet_id, asset_id, customer_id, name, description, status, balance, created_at in rows:
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
                )
            for customer_key in keys.customers_with_wallets:
                state.customer_wallets[customer_key] = []
            for wallet in state.wallets.values():
                if wallet.customer_id is not None:
                    owner = (wallet.project_id, wallet.customer_id)
                    if owner in state.customer_wallets:
                        state.customer_wallets[owner].append(wallet.key)
            self._load_wallet_assets_and_owners(state, owners=keys.wallet_owners)

        if keys.reference_keys:
            state.references.update(self.load_references(keys.reference_keys))
        self._loaded_wallets = state.wallets
        return state

    def load_references(self, keys: Sequence[ReferenceKey]) -> dict[ReferenceKey, Result]:
        """The stored result of each spent reference among `keys`, noting who spent it."""
        found: dict[ReferenceKey, Result] = {}
        for project_id, reference_id, result, topic, partition, offset, request_hash in self._fetch(SELECT_REFERENCES, _pairs(keys)):
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
            for project_id, asset_id, code, name, fractions, in_use, created_at in self._fetch(SELECT_ASSETS, _pairs(keys))
        }

    def _fetch(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement on the driver connection (binary parameters) and return its rows."""
        cursor = self._driver_cursor()
        with self._as_sqlalchemy_errors(statement):
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _lock(self, table: sa.Table, id_column: str, keys: Sequence[tuple[str, str]]) -> None:
        self.connection.execute(
            sa.select(table.c.project_id, table.c[id_column])
            .where(_keys_in(table, "project_id", id_column, keys, f"lock_{table.name}"))
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
            for row in self.connection.execute(
                sa.select(m.customers).where(_keys_in(m.customers, "project_id", "customer_id", missing_owners, "wallet_owners"))
            ):
                state.customers[(row.project_id, row.customer_id)] = _to_customer(row)

    # ------------------------------------------------------------------------------- writing

    def write(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> None:
        """Write the batch's change set: multi-row statements and one COPY, never a row per trip.

        `spenders` names the record that spent each new reference, with its fingerprint.
        """
        c = self.connection
        if outcome.projects_upserted:
            rows = [{"project_id": p.project_id, "name": p.name, "created_at": p.created_at} for p in outcome.projects_upserted]
            statement = pg_insert(m.projects)
            c.execute(statement.on_conflict_do_update(index_elements=["project_id"], set_={"name": statement.excluded.name}), rows)
        if outcome.assets_deleted:
            c.execute(sa.delete(m.assets).where(_keys_in(m.assets, "project_id", "asset_id", outcome.assets_deleted, "del_assets")))
        if outcome.assets_upserted:
            rows = [
                {
                    "project_id": a.project_id,
                    "asset_id": a.asset_id,
                    "code": a.code,
                    "name": a.name,
                    "fractions": a.fractions,
                    "in_use": a.in_use,
                    "created_at": a.created_at,
                }
                for a in outcome.assets_upserted
            ]
            statement = pg_insert(m.assets)
            c.execute(
                statement.on_conflict_do_update(
                    index_elements=["project_id", "asset_id"],
                    set_={"name": statement.excluded.name, "in_use": statement.excluded.in_use},
                ),
                rows,
            )
        if outcome.customers_deleted:
            c.execute(
                sa.delete(m.customers).where(_keys_in(m.customers, "project_id", "customer_id", outcome.customers_deleted, "del_customers"))
            )
        if outcome.customers_upserted:
            rows = [
                {
                    "project_id": x.project_id,
                    "customer_id": x.customer_id,
                    "name": x.name,
                    "description": x.description,
                    "status": x.status.value,
                    "created_at": x.created_at,
                }
                for x in outcome.customers_upserted
            ]
            statement = pg_insert(m.customers)
            c.execute(
                statement.on_conflict_do_update(
                    index_elements=["project_id", "customer_id"],
                    set_={k: statement.excluded[k] for k in ("name", "description", "status", "created_at")},
                ),
                rows,
            )
        if outcome.wallets_upserted:
            self._upsert_wallets(outcome.wallets_upserted, now=now)
        if outcome.transactions:
            self._copy_transactions(outcome)
        if outcome.entries:
            self._copy_entries(outcome)
        if outcome.references:
            # A reference spent concurrently by another partition makes this fail on the
            # primary key; the caller retries the whole batch, which then sees the reference.
            self._copy_references(outcome, spenders=spenders, now=now)

    def _driver_cursor(self) -> Any:
        return self.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

    @contextmanager
    def _as_sqlalchemy_errors(self, statement: str) -> Iterator[None]:
        """psycopg errors of statements run on the driver connection, raised as SQLAlchemy's
        (the service decides on `sa.exc.DBAPIError` and its `.orig`, as for any statement)."""
        try:
            yield
        except psycopg.Error as error:
            raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error

    def _upsert_wallets(self, wallets: Sequence[Wallet], *, now: datetime) -> None:
        """Every changed wallet in at most two statements.

        The common change, a new balance of a wallet loaded (and locked) by this batch, is one
        UPDATE ... FROM unnest(ids, balances); anything else (a new wallet, a status, name or
        description change) goes through one INSERT ... ON CONFLICT DO UPDATE of every column.
        Arrays go as binary parameters: text-format arrays cost the client ~5x more to encode.
        """
        loaded = self._loaded_wallets
        ids: list[list[str]] = [[], [], []]
        full: list[list[Any]] = [[] for _ in range(10)]
        for w in wallets:
            before = loaded.get((w.project_id, w.wallet_id))
            if (
                before is not None
                and before.status is w.status
                and before.name == w.name
                and before.description == w.description
                and before.asset_id == w.asset_id
                and before.customer_id == w.customer_id
                and before.created_at == w.created_at
            ):
                ids[0].append(w.project_id)
                ids[1].append(w.wallet_id)
                ids[2].append(str(w.balance))
                continue
            for column, value in zip(
                full,
                (w.project_id, w.wallet_id, w.asset_id, w.customer_id, w.name, w.description, w.status.value, str(w.balance), w.created_at, now),
                strict=True,
            ):
                column.append(value)
        cursor = self._driver_cursor()
        if ids[0]:
            with self._as_sqlalchemy_errors(UPDATE_BALANCES):
                cursor.execute(UPDATE_BALANCES, [now, *ids])
            if cursor.rowcount != len(ids[0]):
                raise RuntimeError(f"updated {cursor.rowcount} of {len(ids[0])} locked wallets")
        if full[0]:
            with self._as_sqlalchemy_errors(UPSERT_WALLETS):
                cursor.execute(UPSERT_WALLETS, full)

    def _copy_transactions(self, outcome: BatchOutcome) -> None:
        dump_operations = _OPERATIONS.dump_json
        with self._as_sqlalchemy_errors(COPY_TRANSACTIONS), self._driver_cursor().copy(COPY_TRANSACTIONS) as copy:
            for t in outcome.transactions:
                error = t.error
                copy.write_row(
                    (
                        t.project_id,
                        t.transaction_id,
                        t.reference_id,
                        t.description,
                        t.status.value,
                        dump_operations(t.operations).decode(),
                        error.code.value if error else None,
                        error.message if error else None,
                        error.operation_index if error else None,
                        t.created_at,
                    )
                )

    def _copy_entries(self, outcome: BatchOutcome) -> None:
        with self._as_sqlalchemy_errors(COPY_ENTRIES), self._driver_cursor().copy(COPY_ENTRIES) as copy:
            for e in outcome.entries:
                copy.write_row(
                    (e.project_id, e.wallet_id, e.transaction_id, e.operation_index, e.entry_type.value, e.amount, e.balance_after, e.created_at)
                )

    def _copy_references(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> None:
        """Spent references with their result, serialized once: the JSON stored here is also
        what gets published (`result_json`), so the two can never differ."""
        result_json = self.result_json
        with self._as_sqlalchemy_errors(COPY_REFERENCES), self._driver_cursor().copy(COPY_REFERENCES) as copy:
            for r in outcome.references:
                text = r.result.model_dump_json()
                result_json[id(r.result)] = text
                spender = spenders.get((r.project_id, r.reference_id))
                source, request_hash = spender if spender else ((None, None, None), None)
                copy.write_row((r.project_id, r.reference_id, r.request_type, text, *source, request_hash, now))

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
            for key_id, project_id, revoked_at, secret_sha256 in self._fetch(SELECT_SIGNING_KEYS, [list(key_ids)])
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
        self._fetch(UPSERT_OFFSETS, [consumer_group, now, topics, partitions, positions])

    def load_offsets(self, *, consumer_group: str, topic: str) -> dict[int, int]:
        return {partition: offset for partition, offset in self._fetch(SELECT_OFFSETS, [consumer_group, topic])}
