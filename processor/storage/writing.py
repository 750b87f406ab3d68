"""Writing a batch's change set: a few multi-row statements and three COPYs, never a row per trip.

The common change, new balances of wallets the batch loaded (and locked), is one UPDATE ...
FROM unnest; history rows (transactions, entries, spent references) go by COPY. A spent
reference's result is serialized once: the JSON stored is also the JSON published
(`StoredResults`), so the two can never differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from processor.ledger.outcome import BatchOutcome
from processor.ledger.state import Hold, Metadata, ReferenceKey, Wallet, WalletKey
from processor.storage import tables as m
from processor.storage.driver import as_sqlalchemy_errors, driver_cursor, keys_in
from processor.storage.sources import Spender
from processor.storage.statements import COPY_ENTRIES, COPY_REFERENCES, COPY_TRANSACTIONS, UPDATE_BALANCES, UPSERT_HOLDS, UPSERT_WALLETS
from schemas.results import Result


def metadata_json(metadata: Metadata) -> str:
    """Metadata as the JSON text a jsonb column takes; the common empty one without encoding."""
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":")) if metadata else "{}"


@dataclass(slots=True, frozen=True)
class StoredResults:
    """The JSON each reference spent by the batch was stored with, to publish the same bytes.

    Looked up by the result itself: another result under the same reference (a rejected
    repeat of it) is not the one stored and gets None."""

    by_reference: dict[ReferenceKey, tuple[Result, str]] = field(default_factory=dict)

    def json_of(self, result: Result) -> str | None:
        stored = self.by_reference.get((result.project_id or "", result.reference_id))
        return stored[1] if stored is not None and stored[0] is result else None


class BatchWriter:
    """Writes one batch's outcome on the unit of work's connection, inside its transaction."""

    def __init__(self, *, connection: sa.Connection, loaded_wallets: Mapping[WalletKey, Wallet]) -> None:
        self.connection = connection
        # The wallets as the batch loaded (and locked) them: a balance-only change of one of
        # them is the cheap UPDATE; anything else the full upsert.
        self._loaded_wallets = loaded_wallets

    def _driver_cursor(self) -> Any:
        return driver_cursor(self.connection)

    def write(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> StoredResults:
        """Write the batch's change set; `spenders` names the record that spent each new
        reference, with its fingerprint. Returns the JSON each spent reference was stored with."""
        self._write_projects_and_assets(outcome)
        self._write_customers(outcome)
        if outcome.wallets_upserted:
            self._upsert_wallets(outcome.wallets_upserted, now=now)
        if outcome.holds_upserted:  # after the wallets: a hold's wallet may be new in this batch
            self._upsert_holds(outcome.holds_upserted)
        if outcome.transactions:
            self._copy_transactions(outcome)
        if outcome.entries:
            self._copy_entries(outcome)
        if not outcome.references:
            return StoredResults()
        # A reference spent concurrently by another partition makes this fail on the
        # primary key; the caller retries the whole batch, which then sees the reference.
        return self._copy_references(outcome, spenders=spenders, now=now)

    def _write_projects_and_assets(self, outcome: BatchOutcome) -> None:
        if outcome.projects_upserted:
            rows = [{"project_id": p.project_id, "name": p.name, "created_at": p.created_at} for p in outcome.projects_upserted]
            self._upsert(m.projects, rows, key=("project_id",), changing=("name",))
        if outcome.assets_deleted:
            self._delete(m.assets, "asset_id", outcome.assets_deleted)
        if outcome.assets_upserted:
            columns = ("project_id", "asset_id", "code", "name", "fractions", "in_use", "created_at")
            rows = [{column: getattr(a, column) for column in columns} for a in outcome.assets_upserted]
            self._upsert(m.assets, rows, key=("project_id", "asset_id"), changing=("name", "in_use"))

    def _write_customers(self, outcome: BatchOutcome) -> None:
        if outcome.customers_deleted:
            self._delete(m.customers, "customer_id", outcome.customers_deleted)
        if outcome.customers_upserted:
            columns = ("project_id", "customer_id", "name", "description", "created_at", "metadata")
            rows = [{**{column: getattr(x, column) for column in columns}, "status": x.status.value} for x in outcome.customers_upserted]
            self._upsert(m.customers, rows, key=("project_id", "customer_id"), changing=("name", "description", "status", "created_at", "metadata"))

    def _upsert(self, table: sa.Table, rows: list[dict[str, Any]], *, key: tuple[str, ...], changing: tuple[str, ...]) -> None:
        """One multi-row INSERT ... ON CONFLICT (key) DO UPDATE of the `changing` columns."""
        statement = pg_insert(table)
        self.connection.execute(statement.on_conflict_do_update(index_elements=list(key), set_={c: statement.excluded[c] for c in changing}), rows)

    def _delete(self, table: sa.Table, id_column: str, keys: Sequence[tuple[str, str]]) -> None:
        self.connection.execute(sa.delete(table).where(keys_in(table, "project_id", id_column, keys, f"del_{table.name}")))

    def _upsert_wallets(self, wallets: Sequence[Wallet], *, now: datetime) -> None:
        """Every changed wallet in at most two statements.

        The common change, a new balance (and held amount) of a wallet loaded (and locked) by this
        batch, is one UPDATE ... FROM unnest(ids, balances, helds); anything else (a new wallet, a status, name,
        description or metadata change) goes through one INSERT ... ON CONFLICT DO UPDATE of every column.
        Arrays go as binary parameters: text-format arrays cost the client ~5x more to encode.
        """
        loaded = self._loaded_wallets
        ids: list[list[str]] = [[], [], [], []]
        full: list[list[Any]] = [[] for _ in range(12)]
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
                and before.metadata == w.metadata
            ):
                ids[0].append(w.project_id)
                ids[1].append(w.wallet_id)
                ids[2].append(str(w.balance))
                ids[3].append(str(w.held))
                continue
            for column, value in zip(
                full,
                (
                    w.project_id, w.wallet_id, w.asset_id, w.customer_id, w.name, w.description, w.status.value, str(w.balance), str(w.held), w.created_at,
                    now, metadata_json(w.metadata),
                ),
                strict=True,
            ):
                column.append(value)
        cursor = self._driver_cursor()
        if ids[0]:
            with as_sqlalchemy_errors(UPDATE_BALANCES):
                cursor.execute(UPDATE_BALANCES, [now, *ids])
            if cursor.rowcount != len(ids[0]):
                raise RuntimeError(f"updated {cursor.rowcount} of {len(ids[0])} locked wallets")
        if full[0]:
            with as_sqlalchemy_errors(UPSERT_WALLETS):
                cursor.execute(UPSERT_WALLETS, full)

    def _upsert_holds(self, holds: Sequence[Hold]) -> None:
        """New holds and finished ones in one INSERT ... ON CONFLICT DO UPDATE."""
        columns: list[list[Any]] = [[] for _ in range(13)]
        for h in holds:
            values = (
                h.project_id, h.hold_id, h.wallet_id, h.to_wallet_id, str(h.amount), None if h.captured is None else str(h.captured),
                h.status.value, h.expires_at, h.created_by, h.finished_by, h.created_at, h.finished_at, metadata_json(h.metadata),
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        with as_sqlalchemy_errors(UPSERT_HOLDS):
            self._driver_cursor().execute(UPSERT_HOLDS, columns)

    def _copy_transactions(self, outcome: BatchOutcome) -> None:
        dump_operations = m.OPERATIONS_JSON.dump_json
        with as_sqlalchemy_errors(COPY_TRANSACTIONS), self._driver_cursor().copy(COPY_TRANSACTIONS) as copy:
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
                        t.reverses,
                        metadata_json(t.metadata),
                    )
                )

    def _copy_entries(self, outcome: BatchOutcome) -> None:
        with as_sqlalchemy_errors(COPY_ENTRIES), self._driver_cursor().copy(COPY_ENTRIES) as copy:
            for e in outcome.entries:
                copy.write_row(
                    (
                        e.project_id, e.wallet_id, e.transaction_id, e.operation_index, e.entry_type.value, e.amount, e.balance_after, e.created_at,
                        # NULL when nothing is held (it is balance_after): no number to parse and check
                        # for PostgreSQL on the seed workloads' entries.
                        None if e.available_after == e.balance_after else e.available_after,
                    )  # fmt: skip
                )

    def _copy_references(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> StoredResults:
        """Spent references with their result, serialized once (`StoredResults`)."""
        stored = StoredResults()
        by_reference = stored.by_reference
        with as_sqlalchemy_errors(COPY_REFERENCES), self._driver_cursor().copy(COPY_REFERENCES) as copy:
            for r in outcome.references:
                text = r.result.model_dump_json()
                by_reference[(r.project_id, r.reference_id)] = (r.result, text)
                spender = spenders.get((r.project_id, r.reference_id))
                source, request_hash = spender if spender else ((None, None, None), None)
                copy.write_row((r.project_id, r.reference_id, r.request_type, text, *source, request_hash, now))
        return stored
