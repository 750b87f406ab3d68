"""The ledger engine: a batch of decoded requests + loaded state -> outcome. Pure.

No I/O, no clock (``now`` is passed in), no randomness (IDs are derived). Requests run
in order; each sees the effects of the ones before it in the batch.

Per request:
1. project check: every request but project.create needs its project -> ProjectNotFound
   (the reference ID is NOT spent: the project to spend it in does not exist).
2. reference check: (project_id, reference_id) already spent -> DuplicateReferenceId with
   ``original`` = the stored result; nothing changes, nothing is recorded.
3. the request's rules; success or failure, the result is recorded as the reference's
   answer (``BatchOutcome.references``) — except a hold.expire's, which spends nothing.
An unexpected exception fails that request alone with InternalError, undoes whatever it
had changed, does not spend its reference (a redelivery after a fix may succeed) and the
batch goes on.

Holds expire by log time (docs/holds-and-reversals.md): before a request is applied, every
Active hold of the wallets it touches whose ``expires_at`` is at or before the request's log
time is released, as its own transaction (reference ``~expire/{hold_id}``); that expiry stays
even if the request then fails.

The operations of a transaction are posted in processor/ledger/postings.py. Why this module is
longer than ~400 lines: it is the one place with a handler for each of the twenty request
types (each ~10-20 lines, on the batch's one working state); split across modules they would
need mixins sharing that state, which hides more than it shows.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final, TypeVar

from schemas.ids import derive_transaction_id
from processor.ledger.state_keys import created_asset_id, opened_wallet_id, operation_wallet_ids, resolved_operations
from schemas.requests import request_project_id
from processor.ledger.postings import Context, Posted, Posting, check_postings, opposite, post_operations
from processor.ledger.rejection import Rejected, reject
from processor.ledger.outcome import BatchOutcome, EntryRecord, ReferenceRecord, TransactionRecord
from processor.ledger.state import NO_METADATA, Asset, Customer, Hold, HoldKey, LedgerState, Metadata, Project, StoredTransaction, TransactionKey, Wallet, WalletKey
from processor.ledger.views import (
    asset_view,
    build,
    customer_view,
    error_info,
    failed_result,
    hold_view,
    project_view,
    wallet_view,
)
from processor.ledger.work import WorkingState
from schemas.amounts import format_minor_units
from schemas.errors import ErrorCode
from schemas.requests import (
    AssetCreate,
    AssetDelete,
    AssetRename,
    CustomerDelete,
    CustomerResume,
    CustomerSuspend,
    CustomerUpsert,
    HOLD_OPERATIONS,
    Capture,
    HoldCapture,
    HoldCreate,
    HoldExpire,
    HoldVoid,
    ProjectCreate,
    ProjectRename,
    RequestModel,
    SystemWalletOpen,
    Operation,
    TransactionReverse,
    TransactionRun,
    Void,
    WalletOpen,
    WalletRename,
    WalletSetDescription,
    WalletSetStatus,
)
from schemas.results import EntryView, ErrorInfo, Result, TransactionView
from schemas.states import CustomerStatus, HoldStatus, Status, WalletStatus

__all__ = ["apply_batch"]

T = TypeVar("T")

_NO_VIEWS: Final[dict[str, None]] = {
    "project": None,
    "asset": None,
    "customer": None,
    "wallet": None,
    "wallets": None,
    "transaction": None,
    "hold": None,
    "original": None,
}


def apply_batch(
    *, requests: Sequence[RequestModel], state: LedgerState, now: datetime, log_times: Sequence[datetime | None] | None = None
) -> BatchOutcome:
    """Apply ``requests`` in order to ``state`` (not mutated) and return the outcome.

    ``log_times``: each request's time in the log (its record's LogAppendTime), which decides
    hold expiry; None (or a None in it) where there is none: ``now`` then."""
    assert log_times is None or len(log_times) == len(requests), "one log time per request"
    return _Batch(state=state, now=now).run(requests, log_times)


class _Batch:
    def __init__(self, *, state: LedgerState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.log_time = now  # the current request's
        self.work = WorkingState(state)
        self.outcome = BatchOutcome()
        # Transactions reversed by this batch (the loaded `reversed_by` predates it).
        self._reversed: dict[TransactionKey, str] = {}
        # The holds of each wallet (loaded or made by this batch), for expiry.
        self._holds_of: dict[WalletKey, list[HoldKey]] = {}
        for hold in state.holds.values():
            self._holds_of.setdefault(hold.wallet_key, []).append(hold.key)

    # --- driver -------------------------------------------------------------------------

    def run(self, requests: Sequence[RequestModel], log_times: Sequence[datetime | None] | None) -> BatchOutcome:
        outcome = self.outcome
        for index, request in enumerate(requests):
            self.log_time = (log_times[index] if log_times is not None else None) or self.now
            self.work.begin()
            mark = self._mark()
            try:
                if self.work.holds:  # none loaded or made: nothing can expire
                    self._expire_due_holds(request)
                    self.work.begin()  # the expiry stays even if the request fails
                    mark = self._mark()
                result = self._apply_one(request)
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the batch
                self.work.rollback()
                del outcome.transactions[mark[0] :]
                del outcome.entries[mark[1] :]
                del outcome.references[mark[2] :]
                result = self._internal_error(request, exc)
                outcome.faults.append((index, exc))
            outcome.results.append(result)
        self._collect_changes()
        return outcome

    def _mark(self) -> tuple[int, int, int]:
        outcome = self.outcome
        return (len(outcome.transactions), len(outcome.entries), len(outcome.references))

    def _internal_error(self, request: RequestModel, exc: Exception) -> Result:
        try:
            project_id: str | None = request_project_id(request)
        except Exception:  # noqa: BLE001
            project_id = getattr(request, "project_id", None)
        return failed_result(
            reference_id=request.reference_id,
            project_id=project_id,
            request_type=request.type,
            error=error_info(ErrorCode.InternalError, f"internal error: {type(exc).__name__}"),
            processed_at=self.now,
        )

    def _apply_one(self, request: RequestModel) -> Result:
        project_id = request_project_id(request)
        reference_key = (project_id, request.reference_id)
        if request.type != "project.create" and project_id not in self.work.projects:
            return failed_result(
                reference_id=request.reference_id,
                project_id=project_id,
                request_type=request.type,
                error=error_info(ErrorCode.ProjectNotFound, f"project {project_id!r} not found"),
                processed_at=self.now,
            )
        original = self.work.references.get(reference_key)
        if original is not None:
            return failed_result(
                reference_id=request.reference_id,
                project_id=project_id,
                request_type=request.type,
                error=error_info(
                    ErrorCode.DuplicateReferenceId,
                    f"reference ID {request.reference_id!r} was already used in project {project_id!r}",
                ),
                processed_at=self.now,
                original=original,
            )
        handler = _HANDLERS[request.type]
        try:
            result = handler(self, request, project_id)
        except Rejected as rejected:
            self.work.rollback()
            result = failed_result(
                reference_id=request.reference_id,
                project_id=project_id,
                request_type=request.type,
                error=error_info(rejected.code, rejected.message, rejected.operation_index),
                processed_at=self.now,
            )
        if request.type == "hold.expire":
            # Spends nothing: a sweep may come any number of times (early, twice, after a
            # capture), and each is answered from the hold's state, which the log decides.
            return result
        self.work.spend_reference(reference_key, result)
        self.outcome.references.append(
            ReferenceRecord(
                project_id=project_id,
                reference_id=request.reference_id,
                request_type=request.type,
                result=result,
            )
        )
        return result

    def _completed(self, request: RequestModel, project_id: str, **views: object) -> Result:
        return build(
            Result,
            reference_id=request.reference_id,
            project_id=project_id,
            type=request.type,
            status=Status.Completed,
            error=None,
            processed_at=self.now,
            **{**_NO_VIEWS, **views},
        )

    def _collect_changes(self) -> None:
        work, base, outcome = self.work, self.state, self.outcome
        outcome.projects_upserted, _ = work.changed(work.projects, base.projects)
        outcome.assets_upserted, outcome.assets_deleted = work.changed(work.assets, base.assets)
        outcome.customers_upserted, outcome.customers_deleted = work.changed(
            work.customers, base.customers
        )
        outcome.wallets_upserted, deleted_wallets = work.changed(work.wallets, base.wallets)
        assert not deleted_wallets, "WALLETS_NEVER_DELETED"
        outcome.holds_upserted, deleted_holds = work.changed(work.holds, base.holds)
        assert not deleted_holds, "HOLDS_NEVER_DELETED"

    # --- lookups ------------------------------------------------------------------------

    def _fractions_of(self, wallet: Wallet) -> int:
        return self.work.assets[(wallet.project_id, wallet.asset_id)].fractions

    def _wallet_view(self, wallet: Wallet) -> object:
        return wallet_view(wallet, fractions=self._fractions_of(wallet))

    # --- projects -----------------------------------------------------------------------

    def project_create(self, request: ProjectCreate, project_id: str) -> Result:
        if project_id in self.work.projects:
            reject(ErrorCode.ProjectAlreadyExists, f"project {project_id!r} already exists")
        project = Project(project_id=project_id, name=request.name, created_at=self.now)
        self.work.put_project(project)
        return self._completed(request, project_id, project=project_view(project, assets=[]))

    def project_rename(self, request: ProjectRename, project_id: str) -> Result:
        project = replace(self.work.projects[project_id], name=request.name)
        self.work.put_project(project)
        return self._completed(request, project_id, project=project_view(project, assets=None))

    # --- assets -------------------------------------------------------------------------

    def asset_create(self, request: AssetCreate, project_id: str) -> Result:
        asset_id = created_asset_id(request)
        _absent(self.work.assets, project_id, asset_id, ErrorCode.AssetAlreadyExists, "asset")
        asset = Asset(
            project_id=project_id,
            asset_id=asset_id,
            code=request.code,
            name=request.name,
            fractions=request.fractions,
            in_use=False,
            created_at=self.now,
        )
        self.work.put_asset(asset)
        return self._completed(request, project_id, asset=asset_view(asset))

    def asset_rename(self, request: AssetRename, project_id: str) -> Result:
        asset = replace(_existing(self.work.assets, project_id, request.asset_id, ErrorCode.AssetNotFound, "asset"), name=request.name)
        self.work.put_asset(asset)
        return self._completed(request, project_id, asset=asset_view(asset))

    def asset_delete(self, request: AssetDelete, project_id: str) -> Result:
        asset = _existing(self.work.assets, project_id, request.asset_id, ErrorCode.AssetNotFound, "asset")
        if asset.in_use:
            reject(ErrorCode.AssetInUse, f"asset {asset.asset_id!r} is used by a wallet")
        self.work.delete_asset(asset.key)
        return self._completed(request, project_id, asset=asset_view(asset))

    # --- customers ----------------------------------------------------------------------

    def customer_upsert(self, request: CustomerUpsert, project_id: str) -> Result:
        current = self.work.customers.get((project_id, request.customer_id))
        if current is None:
            customer = Customer(
                project_id=project_id,
                customer_id=request.customer_id,
                name=request.name or "",
                description=request.description or "",
                status=CustomerStatus.Active,
                created_at=self.now,
                metadata=request.metadata or NO_METADATA,
            )
        else:
            customer = replace(
                current,
                name=current.name if request.name is None else request.name,
                description=current.description if request.description is None else request.description,
                metadata=current.metadata if request.metadata is None else request.metadata,  # replaced whole, never merged
            )
        self.work.put_customer(customer)
        return self._completed(request, project_id, customer=customer_view(customer))

    def _customer_wallets(self, customer: Customer) -> list[Wallet]:
        keys = self.work.customer_wallets[customer.key]  # loader contract: present
        return [self.work.wallets[key] for key in keys]

    def customer_suspend(self, request: CustomerSuspend, project_id: str) -> Result:
        customer = _existing(self.work.customers, project_id, request.customer_id, ErrorCode.CustomerNotFound, "customer")
        suspended: list[object] = []
        for wallet in self._customer_wallets(customer):
            if wallet.status == WalletStatus.Open:
                changed = replace(wallet, status=WalletStatus.Suspended)
                self.work.put_wallet(changed)
                suspended.append(self._wallet_view(changed))
        if customer.status != CustomerStatus.Suspended:
            customer = replace(customer, status=CustomerStatus.Suspended)
            self.work.put_customer(customer)
        return self._completed(request, project_id, customer=customer_view(customer), wallets=suspended)

    def customer_resume(self, request: CustomerResume, project_id: str) -> Result:
        customer = _existing(self.work.customers, project_id, request.customer_id, ErrorCode.CustomerNotFound, "customer")
        if customer.status != CustomerStatus.Active:
            customer = replace(customer, status=CustomerStatus.Active)
            self.work.put_customer(customer)
        return self._completed(request, project_id, customer=customer_view(customer))

    def customer_delete(self, request: CustomerDelete, project_id: str) -> Result:
        customer = _existing(self.work.customers, project_id, request.customer_id, ErrorCode.CustomerNotFound, "customer")
        not_closed = [w.wallet_id for w in self._customer_wallets(customer) if w.status != WalletStatus.Closed]
        if not_closed:
            reject(
                ErrorCode.CustomerHasOpenWallets,
                f"customer {customer.customer_id!r} has {len(not_closed)} wallet(s) not Closed",
            )
        self.work.delete_customer(customer.key)
        return self._completed(request, project_id, customer=customer_view(customer))

    # --- wallets ------------------------------------------------------------------------

    def _open_wallet(
        self, request: WalletOpen | SystemWalletOpen, project_id: str, customer_id: str | None
    ) -> Result:
        asset = _existing(self.work.assets, project_id, request.asset_id, ErrorCode.AssetNotFound, "asset")
        if customer_id is not None:
            customer = _existing(self.work.customers, project_id, customer_id, ErrorCode.CustomerNotFound, "customer")
            if customer.status == CustomerStatus.Suspended:
                reject(ErrorCode.CustomerSuspended, f"customer {customer_id!r} is suspended")
        wallet_id = opened_wallet_id(request)
        _absent(self.work.wallets, project_id, wallet_id, ErrorCode.WalletAlreadyExists, "wallet")
        wallet = Wallet(
            project_id=project_id,
            wallet_id=wallet_id,
            asset_id=asset.asset_id,
            customer_id=customer_id,
            name=request.name or "",
            description=request.description or "",
            status=WalletStatus.Open,
            balance=0,
            created_at=self.now,
            metadata=request.metadata or NO_METADATA,
        )
        self.work.put_wallet(wallet)
        if customer_id is not None:
            self.work.add_customer_wallet((project_id, customer_id), wallet.key)
        if not asset.in_use:
            self.work.put_asset(replace(asset, in_use=True))
        return self._completed(request, project_id, wallet=wallet_view(wallet, fractions=asset.fractions))

    def wallet_open(self, request: WalletOpen, project_id: str) -> Result:
        return self._open_wallet(request, project_id, request.customer_id)

    def system_wallet_open(self, request: SystemWalletOpen, project_id: str) -> Result:
        return self._open_wallet(request, project_id, None)

    def wallet_set_status(self, request: WalletSetStatus, project_id: str) -> Result:
        wallet = _existing(self.work.wallets, project_id, request.wallet_id, ErrorCode.WalletNotFound, "wallet")
        target = request.status
        if wallet.status == target:
            return self._completed(request, project_id, wallet=self._wallet_view(wallet))
        if wallet.status == WalletStatus.Closed:
            reject(ErrorCode.WalletClosed, f"wallet {wallet.wallet_id!r} is closed; Closed is final")
        if target == WalletStatus.Closed and wallet.held != 0:
            reject(ErrorCode.WalletHasActiveHolds, f"wallet {wallet.wallet_id!r} has {self._wallet_view(wallet).held} held by Active holds: capture or void them first")
        if target == WalletStatus.Closed and wallet.balance != 0:
            reject(ErrorCode.WalletNotEmpty, f"wallet {wallet.wallet_id!r} has a balance of {self._wallet_view(wallet).balance}: only an empty wallet can be closed")
        if target == WalletStatus.Open and wallet.customer_id is not None:
            owner = self.work.customers[(project_id, wallet.customer_id)]  # loader contract
            if owner.status == CustomerStatus.Suspended:
                reject(ErrorCode.CustomerSuspended, f"customer {owner.customer_id!r} is suspended")
        wallet = replace(wallet, status=target)
        self.work.put_wallet(wallet)
        return self._completed(request, project_id, wallet=self._wallet_view(wallet))

    def wallet_rename(self, request: WalletRename, project_id: str) -> Result:
        wallet = _existing(self.work.wallets, project_id, request.wallet_id, ErrorCode.WalletNotFound, "wallet")
        # Metadata given is replaced whole, never merged; absent, it stays.
        wallet = replace(wallet, name=request.name, metadata=wallet.metadata if request.metadata is None else request.metadata)
        self.work.put_wallet(wallet)
        return self._completed(request, project_id, wallet=self._wallet_view(wallet))

    def wallet_set_description(self, request: WalletSetDescription, project_id: str) -> Result:
        wallet = replace(
            _existing(self.work.wallets, project_id, request.wallet_id, ErrorCode.WalletNotFound, "wallet"), description=request.description
        )
        self.work.put_wallet(wallet)
        return self._completed(request, project_id, wallet=self._wallet_view(wallet))

    # --- transactions -------------------------------------------------------------------

    def transaction_run(self, request: TransactionRun, project_id: str) -> Result:
        operations = resolved_operations(request.operations, project_id=project_id, reference_id=request.reference_id)
        return self._run_operations(request, project_id, operations, reverses=None, metadata=request.metadata or NO_METADATA)

    def transaction_reverse(self, request: TransactionReverse, project_id: str) -> Result:
        """The opposite of each operation of a Completed transaction, in reverse order, as one new
        transaction (docs/holds-and-reversals.md): at most once, never of a reversal."""
        named = request.transaction_id
        original = self._stored_transaction((project_id, named))
        if original is None:
            reject(ErrorCode.TransactionNotFound, f"transaction {named!r} not found")
        if original.reverses is not None:
            reject(ErrorCode.TransactionNotReversible, f"transaction {named!r} is a reversal (of {original.reverses!r}); run a new transaction to redo what it undid")
        if original.status is not Status.Completed:
            reject(ErrorCode.TransactionNotReversible, f"transaction {named!r} failed: nothing of it was applied")
        if any(isinstance(operation, HOLD_OPERATIONS) for operation in original.operations):
            reject(ErrorCode.TransactionNotReversible, f"transaction {named!r} has hold operations: void or capture the hold instead")
        reversed_by = self._reversed.get(original.key) or original.reversed_by
        if reversed_by is not None:
            reject(ErrorCode.TransactionAlreadyReversed, f"transaction {named!r} was reversed by transaction {reversed_by!r}")
        operations = [opposite(op) for op in reversed(original.operations)]
        result = self._run_operations(request, project_id, operations, reverses=named, metadata=request.metadata or NO_METADATA)
        if result.status is Status.Completed:
            assert result.transaction is not None
            self._reversed[original.key] = result.transaction.transaction_id
        return result

    def _stored_transaction(self, key: TransactionKey) -> StoredTransaction | None:
        """A transaction as loaded (rule 7), or as recorded earlier in this batch: a reversal may
        name one whose request came just before it, and the answer may not depend on where a
        batch ends. (A scan, but only for a reversal of a transaction not yet stored.)"""
        loaded = self.state.transactions.get(key)
        if loaded is not None:
            return loaded
        for record in reversed(self.outcome.transactions):
            if (record.project_id, record.transaction_id) == key:
                return StoredTransaction(
                    project_id=record.project_id, transaction_id=record.transaction_id, status=record.status, operations=list(record.operations),
                    reverses=record.reverses, reversed_by=None,
                )  # fmt: skip
        return None

    def _run_operations(
        self, request: TransactionRun | TransactionReverse | HoldCreate | HoldCapture | HoldVoid, project_id: str, operations: list[Operation], *,
        reverses: str | None, metadata: Metadata,
    ) -> Result:  # fmt: skip
        view, posted = self._transaction(
            project_id=project_id, reference_id=request.reference_id, description=request.description or "", operations=operations, reverses=reverses,
            metadata=metadata,
        )  # fmt: skip
        if posted is None:
            assert view.error is not None
            return failed_result(
                reference_id=request.reference_id, project_id=project_id, request_type=request.type, error=view.error, processed_at=self.now, transaction=view
            )
        if isinstance(request, TransactionRun | TransactionReverse):
            return self._completed(request, project_id, transaction=view)
        (hold,) = posted.holds.values()  # a hold.* request is one hold operation
        return self._completed(request, project_id, transaction=view, hold=self._hold_view(hold))

    def _transaction(
        self, *, project_id: str, reference_id: str, description: str, operations: list[Operation], reverses: str | None, metadata: Metadata,
        expiring: bool = False,
    ) -> tuple[TransactionView, Posted | None]:
        """Post the operations as one transaction and record it: Completed with what it posted,
        or Failed (None) naming the first operation that could not be applied. The holds it
        makes carry its metadata."""
        transaction_id = derive_transaction_id(project_id=project_id, reference_id=reference_id)
        wallets = self.work.wallets
        record = functools.partial(
            self._record_transaction, project_id, transaction_id, reference_id=reference_id, description=description, operations=operations, reverses=reverses,
            metadata=metadata,
        )  # fmt: skip
        context = Context(
            project_id=project_id, transaction_id=transaction_id, wallets=wallets, assets=self.work.assets, holds=self.work.holds,
            log_time=self.log_time, now=self.now, metadata=metadata, expiring=expiring,
        )  # fmt: skip
        try:
            posted = post_operations(operations, context)
        except Rejected as rejected:
            return record(status=Status.Failed, entries=[], error=error_info(rejected.code, rejected.message, rejected.operation_index)), None
        if __debug__:
            check_postings(before=wallets, posted=posted)
        for key, balance in posted.balances.items():
            self.work.put_wallet(_with_amounts(wallets[key], balance=balance, held=posted.held[key]))
        for hold in posted.holds.values():
            if hold.key not in self.work.holds:
                self._holds_of.setdefault(hold.wallet_key, []).append(hold.key)
            self.work.put_hold(hold)
        entry_views = self._record_entries(project_id, transaction_id, posted.postings)
        return record(status=Status.Completed, entries=entry_views, error=None), posted

    def _record_entries(self, project_id: str, transaction_id: str, postings: list[Posting]) -> list[EntryView]:
        """Each posting as an entry row, and as the entry view of the result."""
        now = self.now
        wallets = self.work.wallets
        entry_records = self.outcome.entries
        entry_views: list[EntryView] = []
        fractions_of: dict[WalletKey, int] = {}
        for key, index, kind, amount, after, held in postings:
            wallet_id = key[1]
            entry_records.append(
                EntryRecord(
                    project_id=project_id,
                    wallet_id=wallet_id,
                    transaction_id=transaction_id,
                    operation_index=index,
                    entry_type=kind,
                    amount=amount,
                    balance_after=after,
                    created_at=now,
                    available_after=after - held,
                )
            )
            fractions = fractions_of.get(key)
            if fractions is None:
                fractions = fractions_of[key] = self._fractions_of(wallets[key])
            balance_after = format_minor_units(after, fractions=fractions)
            entry_views.append(
                build(
                    EntryView,
                    wallet_id=wallet_id,
                    operation_index=index,
                    type=kind,
                    amount=format_minor_units(amount, fractions=fractions),
                    balance_after=balance_after,
                    available_after=format_minor_units(after - held, fractions=fractions) if held else balance_after,
                )
            )
        return entry_views

    def _record_transaction(
        self,
        project_id: str,
        transaction_id: str,
        *,
        reference_id: str,
        description: str,
        operations: list[Operation],
        reverses: str | None,
        metadata: Metadata,
        status: Status,
        entries: list[EntryView],
        error: ErrorInfo | None,
    ) -> TransactionView:
        """Record a transaction that reached the ledger (Completed or Failed); return its view."""
        self.outcome.transactions.append(
            TransactionRecord(
                project_id=project_id,
                transaction_id=transaction_id,
                reference_id=reference_id,
                description=description,
                status=status,
                operations=operations,
                error=error,
                created_at=self.now,
                metadata=metadata,
                reverses=reverses,
            )
        )
        return build(
            TransactionView,
            project_id=project_id,
            transaction_id=transaction_id,
            reference_id=reference_id,
            description=description,
            status=status,
            operations=operations,
            entries=entries,
            error=error,
            created_at=self.now,
            reverses=reverses,
            reversed_by=None,
            metadata=metadata,
        )

    # --- holds --------------------------------------------------------------------------

    def _hold_view(self, hold: Hold) -> object:
        return hold_view(hold, fractions=self._fractions_of(self.work.wallets[hold.wallet_key]))

    def hold_create(self, request: HoldCreate, project_id: str) -> Result:
        (operation,) = resolved_operations([request.operation(hold_id=request.hold_id)], project_id=project_id, reference_id=request.reference_id)  # type: ignore[arg-type]
        # The Hold operation carries no metadata (operations stay small): the hold gets its transaction's.
        return self._run_operations(request, project_id, [operation], reverses=None, metadata=request.metadata or NO_METADATA)

    def hold_capture(self, request: HoldCapture, project_id: str) -> Result:
        capture = Capture(type="Capture", hold_id=request.hold_id, amount=request.amount)
        return self._run_operations(request, project_id, [capture], reverses=None, metadata=NO_METADATA)

    def hold_void(self, request: HoldVoid, project_id: str) -> Result:
        return self._run_operations(request, project_id, [Void(type="Void", hold_id=request.hold_id)], reverses=None, metadata=NO_METADATA)

    def hold_expire(self, request: HoldExpire, project_id: str) -> Result:
        """Answers for the expiry that `_expire_due_holds` already applied before this request
        (or an earlier one did): Completed once the hold is Expired."""
        hold = _existing(self.work.holds, project_id, request.hold_id, ErrorCode.HoldNotFound, "hold")
        if hold.status is HoldStatus.Active:
            due = "has no expiry" if hold.expires_at is None else f"expires at {hold.expires_at.isoformat()}"
            reject(ErrorCode.HoldNotExpired, f"hold {hold.hold_id!r} {due}; this request's log time is {self.log_time.isoformat()}")
        if hold.status is not HoldStatus.Expired:
            reject(ErrorCode.HoldNotActive, f"hold {hold.hold_id!r} is {hold.status} (by transaction {hold.finished_by!r})")
        return self._completed(request, project_id, hold=self._hold_view(hold))

    def _expire_due_holds(self, request: RequestModel) -> None:
        """Release every Active hold of the request's wallets whose expiry is at or before the
        request's log time, each as its own transaction `~expire/{hold_id}` (a Void that ends
        the hold Expired), in the order of their expiry."""
        project_id = request_project_id(request)
        holds, wallets, log_time = self.work.holds, self.work.wallets, self.log_time
        # By key: a request names a wallet more than once (two operations on it), and a hold made,
        # rolled back and made again is listed twice in _holds_of; each hold expires once.
        due: dict[HoldKey, Hold] = {}
        for wallet_key in dict.fromkeys(self._touched_wallets(request, project_id)):
            wallet = wallets.get(wallet_key)
            if wallet is None or wallet.held == 0:
                continue
            for key in self._holds_of.get(wallet_key, ()):
                hold = holds.get(key)
                if hold is not None and hold.status is HoldStatus.Active and hold.expires_at is not None and hold.expires_at <= log_time:
                    due[key] = hold
        for hold in sorted(due.values(), key=lambda h: (h.expires_at, h.hold_id)):
            expiry = HoldExpire.of(project_id=project_id, hold_id=hold.hold_id)
            description = f"hold {hold.hold_id!r} expired at {hold.expires_at.isoformat()}"  # type: ignore[union-attr]
            view, posted = self._transaction(
                project_id=project_id, reference_id=expiry.reference_id, description=description,
                operations=[Void(type="Void", hold_id=hold.hold_id)], reverses=None, metadata=NO_METADATA, expiring=True,
            )  # fmt: skip
            assert posted is not None, f"HOLD_EXPIRES: {view.error}"

    def _touched_wallets(self, request: RequestModel, project_id: str) -> list[WalletKey]:
        """The wallets a request moves value in or out of, or whose status it sets."""
        holds = self.work.holds
        ids: list[str] = []
        match request:
            case TransactionRun():
                ids += operation_wallet_ids(request.operations)
                for operation in request.operations:
                    if isinstance(operation, Capture | Void) and (hold := holds.get((project_id, operation.hold_id))) is not None:
                        ids.append(hold.wallet_id)
            case TransactionReverse():
                original = self._stored_transaction((project_id, request.transaction_id))
                ids += () if original is None else operation_wallet_ids(original.operations)
            case HoldCreate() | WalletSetStatus():
                ids.append(request.wallet_id)
            case HoldCapture() | HoldVoid() | HoldExpire():
                hold = holds.get((project_id, request.hold_id))
                ids += () if hold is None else (hold.wallet_id,)
        return [(project_id, wallet_id) for wallet_id in ids]


def _existing(found: Mapping[tuple[str, str], T], project_id: str, entity_id: str, code: ErrorCode, kind: str) -> T:
    """The project's entity of that ID, or the request is rejected with `code` (…NotFound)."""
    entity = found.get((project_id, entity_id))
    if entity is None:
        reject(code, f"{kind} {entity_id!r} not found")
    return entity


def _absent(found: Mapping[tuple[str, str], object], project_id: str, entity_id: str, code: ErrorCode, kind: str) -> None:
    """The request is rejected with `code` (…AlreadyExists) when the project has that ID already."""
    if (project_id, entity_id) in found:
        reject(code, f"{kind} {entity_id!r} already exists")


def _with_amounts(wallet: Wallet, *, balance: int, held: int) -> Wallet:
    """``replace(wallet, balance=balance, held=held)`` without its introspection (hot path)."""
    return Wallet(
        project_id=wallet.project_id,
        wallet_id=wallet.wallet_id,
        asset_id=wallet.asset_id,
        customer_id=wallet.customer_id,
        name=wallet.name,
        description=wallet.description,
        status=wallet.status,
        balance=balance,
        created_at=wallet.created_at,
        held=held,
        metadata=wallet.metadata,
    )


_HANDLERS: Final[dict[str, Callable[[_Batch, RequestModel, str], Result]]] = {
    "project.create": _Batch.project_create,
    "project.rename": _Batch.project_rename,
    "asset.create": _Batch.asset_create,
    "asset.rename": _Batch.asset_rename,
    "asset.delete": _Batch.asset_delete,
    "customer.upsert": _Batch.customer_upsert,
    "customer.suspend": _Batch.customer_suspend,
    "customer.resume": _Batch.customer_resume,
    "customer.delete": _Batch.customer_delete,
    "wallet.open": _Batch.wallet_open,
    "system_wallet.open": _Batch.system_wallet_open,
    "wallet.set_status": _Batch.wallet_set_status,
    "wallet.rename": _Batch.wallet_rename,
    "wallet.set_description": _Batch.wallet_set_description,
    "transaction.run": _Batch.transaction_run,
    "transaction.reverse": _Batch.transaction_reverse,
    "hold.create": _Batch.hold_create,
    "hold.capture": _Batch.hold_capture,
    "hold.void": _Batch.hold_void,
    "hold.expire": _Batch.hold_expire,
}  # type: ignore[dict-item]
