"""A copy-on-write working copy of ``LedgerState`` with a per-request undo log.

Entities are never mutated: a change puts a new object under the key. ``rollback``
undoes every put/delete since ``begin``, which is how a failing request (or an
unexpected exception) leaves the working state exactly as it found it.
"""

from typing import Any, Final

from processor.ledger.state import (
    Asset,
    AssetKey,
    Customer,
    CustomerKey,
    Hold,
    HoldKey,
    LedgerState,
    Project,
    ReferenceKey,
    Wallet,
    WalletKey,
)
from schemas.results import Result

_MISSING: Final = object()


class WorkingState:
    __slots__ = (
        "base",
        "projects",
        "assets",
        "customers",
        "wallets",
        "customer_wallets",
        "references",
        "holds",
        "touched",
        "_undo",
    )

    def __init__(self, base: LedgerState) -> None:
        self.base = base
        self.projects: dict[str, Project] = dict(base.projects)
        self.assets: dict[AssetKey, Asset] = dict(base.assets)
        self.customers: dict[CustomerKey, Customer] = dict(base.customers)
        self.wallets: dict[WalletKey, Wallet] = dict(base.wallets)
        self.customer_wallets: dict[CustomerKey, list[WalletKey]] = dict(base.customer_wallets)
        self.references: dict[ReferenceKey, Result] = dict(base.references)
        self.holds: dict[HoldKey, Hold] = dict(base.holds)
        # Per table (by id of the working dict): keys changed at least once, in order.
        self.touched: dict[int, dict[Any, None]] = {
            id(table): {} for table in (self.projects, self.assets, self.customers, self.wallets, self.holds)
        }
        self._undo: list[tuple[dict[Any, Any], Any, object]] = []

    def begin(self) -> None:
        self._undo.clear()

    def rollback(self) -> None:
        for table, key, old in reversed(self._undo):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        self._undo.clear()

    def _put(self, table: dict[Any, Any], key: Any, value: object) -> None:
        self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value
        touched = self.touched.get(id(table))
        if touched is not None:
            touched[key] = None

    def _delete(self, table: dict[Any, Any], key: Any) -> None:
        self._undo.append((table, key, table.pop(key)))
        self.touched[id(table)][key] = None

    def put_project(self, project: Project) -> None:
        self._put(self.projects, project.project_id, project)

    def put_asset(self, asset: Asset) -> None:
        self._put(self.assets, asset.key, asset)

    def delete_asset(self, key: AssetKey) -> None:
        self._delete(self.assets, key)

    def put_customer(self, customer: Customer) -> None:
        self._put(self.customers, customer.key, customer)

    def delete_customer(self, key: CustomerKey) -> None:
        self._delete(self.customers, key)

    def put_wallet(self, wallet: Wallet) -> None:
        self._put(self.wallets, wallet.key, wallet)

    def put_hold(self, hold: Hold) -> None:
        self._put(self.holds, hold.key, hold)

    def add_customer_wallet(self, customer: CustomerKey, wallet: WalletKey) -> None:
        """Keep a loaded customer's wallet list current (unloaded lists are not needed)."""
        current = self.customer_wallets.get(customer)
        if current is not None:
            self._put(self.customer_wallets, customer, [*current, wallet])

    def spend_reference(self, key: ReferenceKey, result: Result) -> None:
        self._put(self.references, key, result)

    def changed(self, table: dict[Any, Any], base: dict[Any, Any]) -> tuple[list[Any], list[Any]]:
        """(upserted values, deleted keys) of one table, against the base state."""
        upserted: list[Any] = []
        deleted: list[Any] = []
        for key in self.touched[id(table)]:
            now = table.get(key)
            before = base.get(key)
            if now is None:
                if before is not None:
                    deleted.append(key)
            elif now is not before:
                upserted.append(now)
        return upserted, deleted
