"""Reads, straight from PostgreSQL (SQLAlchemy Core on the ledger's tables).

Blocking: the routes that call these run in FastAPI's worker threads. Amounts are stored as
integers of minor units and are formatted with the asset's scale, as in results.
Lists are paged with LIMIT page_size + 1 (the extra row only tells whether a next page exists)
in a stable order that an index serves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from processor.gateway.bodies import Page, WalletEntryView
from processor.storage import tables as m
from schemas.amounts import format_minor_units
from schemas.requests import is_project_id
from schemas.results import AssetView, CustomerView, EntryView, ErrorInfo, HoldView, ProjectView, Result, TransactionView, WalletView


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True, slots=True)
class Period:
    """created_at in [start, end): `from` inclusive, `to` exclusive; either may be open."""

    start: datetime | None = None
    end: datetime | None = None

    def where(self, column: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
        conditions = []
        if self.start is not None:
            conditions.append(column >= self.start)
        if self.end is not None:
            conditions.append(column < self.end)
        return conditions


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """`?metadata.<key>=<value>`: only what a transaction whose metadata holds that pair made."""

    key: str
    value: str

    def holds(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """`metadata @> '{"key": "value"}'`: containment, which the GIN index
        ix_transactions_metadata (jsonb_path_ops) serves; it covers only transactions with
        metadata, so its predicate is repeated for the planner to prove the index applies."""
        return sa.and_(column != sa.text("'{}'::jsonb"), column.contains({self.key: self.value}))


def _found_first(query: sa.Select[Any]) -> sa.CTE:
    """`query` as a MATERIALIZED CTE: its rows are found before anything is ordered or limited.

    Why: under row-level security (every read of the gateway's role) PostgreSQL may not use the
    column statistics for an operator that is not leakproof, and `@>` is not: it assumes 1% of
    the rows match. Given ORDER BY ... LIMIT it then walks the project's time index hoping to
    meet a page of matches early, which for a rare value (an order number) reads every
    transaction of the project. Found first, the matches come from the GIN index, and a page
    costs what the matches cost (tests/integration/test_storage.py explains the plan). The price:
    a value most transactions share costs a pass over them; the filter is for finding (an order
    number), not for slicing a ledger in two."""
    return query.cte("matching").prefix_with("MATERIALIZED")


def transactions_query(project_id: str, *, period: Period, reference_id: str | None, metadata: MetadataFilter | None) -> sa.Select[Any]:
    """A project's transactions (with `reversed_by`) in (created_at, transaction_id) order."""
    t = m.transactions
    conditions = [t.c.project_id == project_id, *period.where(t.c.created_at)]
    if reference_id is not None:
        conditions.append(t.c.reference_id == reference_id)
    if metadata is None:
        return sa.select(t, _reversed_by(t)).where(*conditions).order_by(t.c.created_at, t.c.transaction_id)
    found = _found_first(sa.select(t).where(*conditions, metadata.holds(t.c.metadata)))
    return sa.select(found, _reversed_by(found)).order_by(found.c.created_at, found.c.transaction_id)


def entries_query(project_id: str, wallet_id: str, *, period: Period, metadata: MetadataFilter | None) -> sa.Select[Any]:
    """A wallet's entries in (created_at, entry_id) order; with `metadata`, only those of the
    transactions whose metadata holds the pair (an entry has none of its own)."""
    e = m.wallet_entries
    conditions = [e.c.project_id == project_id, e.c.wallet_id == wallet_id, *period.where(e.c.created_at)]
    if metadata is None:
        return sa.select(e).where(*conditions).order_by(e.c.created_at, e.c.entry_id)
    t = m.transactions
    matching = sa.select(t.c.transaction_id).where(t.c.project_id == project_id, metadata.holds(t.c.metadata))
    found = _found_first(sa.select(e).where(*conditions, e.c.transaction_id.in_(matching)))
    return sa.select(found).order_by(found.c.created_at, found.c.entry_id)


def _page(rows: Sequence[Any], paging: Paging, convert: Any) -> Page:
    has_more = len(rows) > paging.page_size
    return Page(items=[convert(row) for row in rows[: paging.page_size]], page=paging.page, page_size=paging.page_size, has_more=has_more)


def _asset(row: Any) -> AssetView:
    return AssetView(
        project_id=row.project_id, asset_id=row.asset_id, code=row.code, name=row.name, fractions=row.fractions, in_use=row.in_use
    )


def _texts(row: Any) -> dict[str, str]:
    """A row's name and description as the views show them: '' for none (both are nullable)."""
    return {"name": row.name or "", "description": row.description or ""}


def _customer(row: Any) -> CustomerView:
    return CustomerView(project_id=row.project_id, customer_id=row.customer_id, status=row.status, metadata=row.metadata, **_texts(row))


def _wallet(row: Any) -> WalletView:
    amounts = {
        name: format_minor_units(value, fractions=row.fractions)
        for name, value in (("balance", int(row.balance)), ("held", int(row.held)), ("available", int(row.balance) - int(row.held)))
    }
    ids = {"project_id": row.project_id, "wallet_id": row.wallet_id, "asset_id": row.asset_id, "customer_id": row.customer_id}
    return WalletView(**ids, status=row.status, created_at=row.created_at, metadata=row.metadata, **amounts, **_texts(row))


def _hold(row: Any) -> HoldView:
    def amount(value: Any) -> str | None:
        return None if value is None else format_minor_units(int(value), fractions=row.fractions)

    columns = ("project_id", "hold_id", "wallet_id", "to_wallet_id", "status", "expires_at", "created_by", "finished_by", "created_at", "finished_at", "metadata")
    return HoldView(**{c: getattr(row, c) for c in columns}, amount=amount(row.amount), captured=amount(row.captured))  # type: ignore[arg-type]


_HOLD_FROM = m.holds.join(m.wallets, sa.and_(m.wallets.c.project_id == m.holds.c.project_id, m.wallets.c.wallet_id == m.holds.c.wallet_id)).join(
    m.assets, sa.and_(m.assets.c.project_id == m.wallets.c.project_id, m.assets.c.asset_id == m.wallets.c.asset_id)
)


_WALLET_COLUMNS = (*m.wallets.c, m.assets.c.fractions)
_WALLET_FROM = m.wallets.join(
    m.assets, sa.and_(m.assets.c.project_id == m.wallets.c.project_id, m.assets.c.asset_id == m.wallets.c.asset_id)
)


ALL_PROJECTS = "*"  # the scope of an operator key's reads across projects


class Reads:
    """Every read runs in a transaction scoped to one project: row-level security (migration
    0005) shows the gateway's role that project's rows and no other's, whatever a query asks."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def connect(self, *, project_id: str) -> Iterator[sa.Connection]:
        # Invariant: the scope is one valid project ID or all of them ('*' is no valid project ID).
        # Raised, not asserted: it must hold under `python -O` too.
        if project_id != ALL_PROJECTS and not is_project_id(project_id):
            raise ValueError(f"a read is scoped to one valid project ID or to all of them, not {project_id!r}")
        with self.engine.connect() as connection:
            connection.execute(sa.select(sa.func.set_config("cloudwallet.project_id", project_id, True)))
            yield connection

    # ----------------------------------------------------------------------------- projects

    def project_exists(self, project_id: str) -> bool:
        with self.connect(project_id=project_id) as c:
            return c.execute(sa.select(sa.literal(1)).where(m.projects.c.project_id == project_id)).first() is not None

    def get_project(self, project_id: str) -> ProjectView | None:
        with self.connect(project_id=project_id) as c:
            row = c.execute(sa.select(m.projects).where(m.projects.c.project_id == project_id)).first()
            if row is None:
                return None
            assets = c.execute(sa.select(m.assets).where(m.assets.c.project_id == project_id).order_by(m.assets.c.asset_id)).all()
        return ProjectView(project_id=row.project_id, name=row.name, created_at=row.created_at, assets=[_asset(a) for a in assets])

    def list_projects(self, paging: Paging, *, only: str | None = None) -> Page:
        query = sa.select(m.projects).order_by(m.projects.c.project_id).limit(paging.page_size + 1).offset(paging.offset)
        if only is not None:
            query = query.where(m.projects.c.project_id == only)
        with self.connect(project_id=ALL_PROJECTS if only is None else only) as c:
            rows = c.execute(query).all()
        return _page(rows, paging, lambda r: ProjectView(project_id=r.project_id, name=r.name, created_at=r.created_at, assets=None))

    # ----------------------------------------------------------------------------- assets

    def list_assets(self, project_id: str, paging: Paging) -> Page:
        query = sa.select(m.assets).where(m.assets.c.project_id == project_id).order_by(m.assets.c.asset_id)
        return self._page_in_project(project_id, query, paging=paging, convert=_asset)

    def get_asset(self, project_id: str, asset_id: str) -> AssetView | None:
        with self.connect(project_id=project_id) as c:
            row = c.execute(sa.select(m.assets).where(m.assets.c.project_id == project_id, m.assets.c.asset_id == asset_id)).first()
        return None if row is None else _asset(row)

    # ----------------------------------------------------------------------------- customers

    def list_customers(self, project_id: str, paging: Paging) -> Page:
        query = sa.select(m.customers).where(m.customers.c.project_id == project_id).order_by(m.customers.c.customer_id)
        return self._page_in_project(project_id, query, paging=paging, convert=_customer)

    def get_customer(self, project_id: str, customer_id: str) -> CustomerView | None:
        with self.connect(project_id=project_id) as c:
            row = c.execute(
                sa.select(m.customers).where(m.customers.c.project_id == project_id, m.customers.c.customer_id == customer_id)
            ).first()
        return None if row is None else _customer(row)

    # ----------------------------------------------------------------------------- wallets

    def get_wallet(self, project_id: str, wallet_id: str) -> WalletView | None:
        query = (
            sa.select(*_WALLET_COLUMNS)
            .select_from(_WALLET_FROM)
            .where(m.wallets.c.project_id == project_id, m.wallets.c.wallet_id == wallet_id)
        )
        with self.connect(project_id=project_id) as c:
            row = c.execute(query).first()
        return None if row is None else _wallet(row)

    def list_wallets(self, project_id: str, *, customer_id: str | None, paging: Paging) -> Page:
        """A customer's wallets, or (customer_id None) the project's system wallets."""
        owner = m.wallets.c.customer_id.is_(None) if customer_id is None else m.wallets.c.customer_id == customer_id
        query = (
            sa.select(*_WALLET_COLUMNS)
            .select_from(_WALLET_FROM)
            .where(m.wallets.c.project_id == project_id, owner)
            .order_by(m.wallets.c.wallet_id)
        )
        return self._page_in_project(project_id, query, paging=paging, convert=_wallet)

    def wallet_entries(
        self, project_id: str, wallet_id: str, *, fractions: int, period: Period, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page:
        """A wallet's entries (`entries_query`), one page."""

        def convert(row: Any) -> WalletEntryView:
            fields = _entry_fields(row, fractions=fractions)
            return WalletEntryView(entry_id=row.entry_id, transaction_id=row.transaction_id, created_at=row.created_at, **fields)

        query = entries_query(project_id, wallet_id, period=period, metadata=metadata)
        return self._page_in_project(project_id, query, paging=paging, convert=convert)

    def balance_before(self, project_id: str, wallet_id: str, *, instant: datetime, inclusive: bool) -> tuple[int, int]:
        """The wallet's (balance, available) in minor units after its last entry before `instant`
        (at or before it, when `inclusive`); zeros before its first entry. Every entry carries
        both after it (available_after: NULL on entries from before holds, when it was the
        balance), so this is one backward probe of ix_wallet_entries_wallet_time."""
        e = m.wallet_entries
        when = e.c.created_at <= instant if inclusive else e.c.created_at < instant
        query = (
            sa.select(e.c.balance_after, sa.func.coalesce(e.c.available_after, e.c.balance_after))
            .where(e.c.project_id == project_id, e.c.wallet_id == wallet_id, when)
            .order_by(e.c.created_at.desc(), e.c.entry_id.desc())
            .limit(1)
        )
        with self.connect(project_id=project_id) as c:
            found = c.execute(query).first()
        return (0, 0) if found is None else (int(found[0]), int(found[1]))

    # ----------------------------------------------------------------------------- holds

    def get_hold(self, project_id: str, hold_id: str) -> HoldView | None:
        query = sa.select(m.holds, m.assets.c.fractions).select_from(_HOLD_FROM).where(m.holds.c.project_id == project_id, m.holds.c.hold_id == hold_id)
        with self.connect(project_id=project_id) as c:
            row = c.execute(query).first()
        return None if row is None else _hold(row)

    def list_wallet_holds(self, project_id: str, wallet_id: str, *, status: str | None, paging: Paging) -> Page:
        """A wallet's holds in (created_at, hold_id) order; `status` Active uses ix_holds_active_wallet."""
        h = m.holds
        query = sa.select(h, m.assets.c.fractions).select_from(_HOLD_FROM).where(h.c.project_id == project_id, h.c.wallet_id == wallet_id)
        if status is not None:
            query = query.where(h.c.status == status)
        return self._page_in_project(project_id, query.order_by(h.c.created_at, h.c.hold_id), paging=paging, convert=_hold)

    def _page_in_project(self, project_id: str, query: sa.Select[Any], *, paging: Paging, convert: Callable[[Any], Any]) -> Page:
        """One page of `query`, read in the project's scope: LIMIT page_size + 1 (the extra row
        only says whether a next page exists)."""
        with self.connect(project_id=project_id) as c:
            rows = c.execute(query.limit(paging.page_size + 1).offset(paging.offset)).all()
        return _page(rows, paging, convert)

    # ----------------------------------------------------------------------------- transactions

    def list_transactions(
        self, project_id: str, *, period: Period, reference_id: str | None, paging: Paging, metadata: MetadataFilter | None = None
    ) -> Page:
        """A page of the project's transactions (`transactions_query`), each with its entries."""
        query = transactions_query(project_id, period=period, reference_id=reference_id, metadata=metadata)
        query = query.limit(paging.page_size + 1).offset(paging.offset)
        with self.connect(project_id=project_id) as c:
            rows = c.execute(query).all()
            shown = rows[: paging.page_size]
            entries = self._entries(c, project_id, [row.transaction_id for row in shown])
        page = _page(rows, paging, lambda row: _transaction(row, entries.get(row.transaction_id, [])))
        return page

    def get_transaction(self, project_id: str, transaction_id: str) -> TransactionView | None:
        t = m.transactions
        with self.connect(project_id=project_id) as c:
            row = c.execute(sa.select(t, _reversed_by(t)).where(t.c.project_id == project_id, t.c.transaction_id == transaction_id)).first()
            if row is None:
                return None
            entries = self._entries(c, project_id, [transaction_id])
        return _transaction(row, entries.get(transaction_id, []))

    @staticmethod
    def _entries(c: sa.Connection, project_id: str, transaction_ids: list[str]) -> dict[str, list[EntryView]]:
        found: dict[str, list[EntryView]] = defaultdict(list)
        if not transaction_ids:
            return found
        e = m.wallet_entries
        query = (
            sa.select(
                e.c.transaction_id, e.c.wallet_id, e.c.operation_index, e.c.entry_type, e.c.amount, e.c.balance_after, e.c.available_after, m.assets.c.fractions
            )
            .select_from(
                e.join(m.wallets, sa.and_(m.wallets.c.project_id == e.c.project_id, m.wallets.c.wallet_id == e.c.wallet_id)).join(
                    m.assets, sa.and_(m.assets.c.project_id == m.wallets.c.project_id, m.assets.c.asset_id == m.wallets.c.asset_id)
                )
            )
            .where(e.c.project_id == project_id, e.c.transaction_id.in_(transaction_ids))
            .order_by(e.c.transaction_id, e.c.entry_id)
        )
        for row in c.execute(query):
            found[row.transaction_id].append(EntryView(**_entry_fields(row, fractions=row.fractions)))
        return found

    # ----------------------------------------------------------------------------- results

    def get_result(self, project_id: str, reference_id: str) -> Result | None:
        p = m.processed_requests
        with self.connect(project_id=project_id) as c:
            value = c.execute(sa.select(p.c.result).where(p.c.project_id == project_id, p.c.reference_id == reference_id)).scalar()
        return None if value is None else Result.model_validate(value)


def _entry_fields(row: Any, *, fractions: int) -> dict[str, Any]:
    """An entry row's EntryView fields, amounts in the asset's scale: a transaction's entries and
    a wallet's ledger show an entry alike."""
    return {
        "wallet_id": row.wallet_id,
        "operation_index": row.operation_index,
        "type": row.entry_type,
        "amount": format_minor_units(int(row.amount), fractions=fractions),
        "balance_after": format_minor_units(int(row.balance_after), fractions=fractions),
        "available_after": format_minor_units(int(row.balance_after if row.available_after is None else row.available_after), fractions=fractions),
    }


def _reversed_by(t: sa.Table | sa.CTE) -> sa.Label[Any]:
    """The Completed reversal of each transaction, if any (one probe of uq_transactions_reversal)."""
    r = m.transactions.alias("reversal")
    found = sa.select(r.c.transaction_id).where(r.c.project_id == t.c.project_id, r.c.reverses == t.c.transaction_id, r.c.status == "Completed")
    return found.scalar_subquery().label("reversed_by")


def _transaction(row: Any, entries: list[EntryView]) -> TransactionView:
    error = None
    if row.error_code is not None:
        error = ErrorInfo(code=row.error_code, message=row.error_message or "", operation_index=row.failed_operation_index)
    return TransactionView(
        project_id=row.project_id,
        transaction_id=row.transaction_id,
        reference_id=row.reference_id,
        description=row.description or "",
        status=row.status,
        operations=row.operations,
        entries=entries,
        error=error,
        created_at=row.created_at,
        reverses=row.reverses,
        reversed_by=row.reversed_by,
        metadata=row.metadata,
    )
