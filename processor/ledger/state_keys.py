"""Which rows a batch needs: a pure function of the decoded requests.

Loader contract (what ``processor.storage`` must put in ``LedgerState`` for a batch):

1. ``projects``: every existing project in ``project_ids``.
2. ``assets``: every existing asset in ``asset_keys``, AND the asset of every wallet
   it loads (joined; a transaction needs the asset's ``fractions``).
3. ``customers``: every existing customer in ``customer_keys``, AND, when
   ``wallet_owners`` is set (the batch has a wallet.set_status, which checks the owner
   before reopening), the owner of every customer wallet it loads (joined). Batches of
   transactions do not need the owners and skip the join.
4. ``wallets``: every existing wallet in ``wallet_keys``, AND every wallet of every
   customer in ``customers_with_wallets``.
5. ``customer_wallets``: an entry for every key in ``customers_with_wallets`` listing
   the keys of all that customer's wallets (empty list if none / no such customer).
6. ``references``: the stored result of every spent reference in ``reference_keys``.
7. ``transactions``: every existing transaction in ``transaction_keys`` (with the ID of the
   Completed transaction that reversed it, if any), AND every wallet its operations touch
   (locked like every loaded wallet, with their assets by rule 2): a reversal moves value
   between the original's wallets, which its request does not name.
8. ``holds``: every existing hold in ``hold_keys`` (any status) AND its wallet and destination
   wallet (locked like every loaded wallet); AND every Active hold of every loaded wallet whose
   ``held`` is above zero (read after the wallet locks: the wallet lock serialises every change
   to its holds). The engine expires due holds of the wallets a request touches, and a Capture
   or Void moves value in wallets its request does not name.

Locks (SELECT ... FOR UPDATE, in sorted key order, one statement per table, in the order
projects -> assets -> customers -> wallets): every loaded wallet (always), the assets in
``locked_asset_keys``, the customers in ``locked_customer_keys`` and the projects in
``locked_project_ids``. Transactions and holds are read, never locked: history is never
updated, and a hold changes only under its wallet's lock. Rows loaded only by
the joins of rules 2 and 3 need no lock: an asset's ``fractions`` never changes and an
asset with a wallet can never be deleted; a customer's suspension suspends its wallets
under the wallet locks, which we hold.

Generated IDs (an omitted project/asset/wallet ID) are derived here exactly as the
engine derives them, so the loader can tell whether they already exist.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.ids import derive_entity_id, derive_hold_id
from processor.ledger.state import AssetKey, CustomerKey, HoldKey, ReferenceKey, TransactionKey, WalletKey
from schemas.requests import (
    AssetCreate,
    AssetDelete,
    AssetRename,
    CustomerDelete,
    CustomerResume,
    CustomerSuspend,
    CustomerUpsert,
    HOLD_OPERATIONS,
    Hold,
    HoldCapture,
    HoldCreate,
    HoldExpire,
    HoldVoid,
    Issue,
    Operation,
    ProjectCreate,
    ProjectRename,
    Redeem,
    RequestModel,
    SystemWalletOpen,
    TransactionReverse,
    TransactionRun,
    Transfer,
    WalletOpen,
    WalletRename,
    WalletSetDescription,
    WalletSetStatus,
    request_project_id,
)


@dataclass(slots=True, frozen=True, kw_only=True)
class StateKeys:
    """Keys to load (and lock) for one batch; every tuple is sorted and duplicate-free."""

    project_ids: tuple[str, ...]
    asset_keys: tuple[AssetKey, ...]
    customer_keys: tuple[CustomerKey, ...]
    wallet_keys: tuple[WalletKey, ...]
    reference_keys: tuple[ReferenceKey, ...]
    customers_with_wallets: tuple[CustomerKey, ...]
    locked_project_ids: tuple[str, ...]
    locked_asset_keys: tuple[AssetKey, ...]
    locked_customer_keys: tuple[CustomerKey, ...]
    wallet_owners: bool = True  # load the owner of every loaded customer wallet (rule 3)
    transaction_keys: tuple[TransactionKey, ...] = ()  # rule 7: transactions a reversal names
    hold_keys: tuple[HoldKey, ...] = ()  # rule 8: holds a request names or creates


def created_asset_id(request: AssetCreate) -> str:
    if request.asset_id is not None:
        return request.asset_id
    return derive_entity_id(kind="asset", project_id=request.project_id, reference_id=request.reference_id)


def opened_wallet_id(request: WalletOpen | SystemWalletOpen) -> str:
    if request.wallet_id is not None:
        return request.wallet_id
    return derive_entity_id(kind="wallet", project_id=request.project_id, reference_id=request.reference_id)


def resolved_operations(operations: list[Operation], *, project_id: str, reference_id: str) -> list[Operation]:
    """The operations as recorded: each Hold without a hold_id gets the one derived from the
    reference ID and its index (`schemas.ids.derive_hold_id`), so the record names its holds."""
    if not any(type(operation) is Hold and operation.hold_id is None for operation in operations):
        return operations  # the common case: nothing to resolve, nothing copied
    return [
        operation.model_copy(update={"hold_id": derive_hold_id(project_id=project_id, reference_id=reference_id, operation_index=index)})
        if type(operation) is Hold and operation.hold_id is None
        else operation
        for index, operation in enumerate(operations)
    ]


def operation_wallet_ids(operations: Iterable[Operation]) -> Iterable[str]:
    """Every wallet the operations name (repeats included), in operation order. A Capture or
    Void names a hold, whose wallets are found when the hold is loaded (rule 8)."""
    for operation in operations:
        kind = type(operation)  # exact types (the contract's models are final): cheaper than isinstance
        if kind is Transfer:
            yield operation.from_wallet_id  # type: ignore[union-attr]
            yield operation.to_wallet_id  # type: ignore[union-attr]
        elif kind is Issue or kind is Redeem:
            yield operation.wallet_id  # type: ignore[union-attr]
        elif kind is Hold:
            yield operation.wallet_id  # type: ignore[union-attr]
            if operation.to_wallet_id is not None:  # type: ignore[union-attr]
                yield operation.to_wallet_id  # type: ignore[union-attr]


_HOLD_TYPES = frozenset(HOLD_OPERATIONS)


def operation_hold_ids(operations: list[Operation], *, project_id: str, reference_id: str) -> Iterable[str]:
    """Every hold the operations name or create (a new one must be checked to be new)."""
    if all(type(operation) not in _HOLD_TYPES for operation in operations):
        return
    for operation in resolved_operations(operations, project_id=project_id, reference_id=reference_id):
        if type(operation) in _HOLD_TYPES:
            yield operation.hold_id  # type: ignore[union-attr]


def state_keys(requests: Iterable[RequestModel]) -> StateKeys:
    projects: set[str] = set()
    assets: set[AssetKey] = set()
    customers: set[CustomerKey] = set()
    wallets: set[WalletKey] = set()
    references: set[ReferenceKey] = set()
    with_wallets: set[CustomerKey] = set()
    locked_projects: set[str] = set()
    locked_assets: set[AssetKey] = set()
    locked_customers: set[CustomerKey] = set()
    wallet_owners = False
    transactions: set[TransactionKey] = set()
    holds: set[HoldKey] = set()

    for request in requests:
        project_id = request_project_id(request)
        projects.add(project_id)
        references.add((project_id, request.reference_id))
        match request:
            case TransactionRun():
                wallets.update((project_id, w) for w in operation_wallet_ids(request.operations))
                holds.update((project_id, h) for h in operation_hold_ids(request.operations, project_id=project_id, reference_id=request.reference_id))
            case TransactionReverse():
                transactions.add((project_id, request.transaction_id))
            case HoldCreate():
                wallets.update((project_id, w) for w in (request.wallet_id, request.to_wallet_id) if w is not None)
                operations = [request.operation(hold_id=request.hold_id)]  # as the engine runs it
                holds.update((project_id, h) for h in operation_hold_ids(operations, project_id=project_id, reference_id=request.reference_id))
            case HoldCapture() | HoldVoid() | HoldExpire():
                holds.add((project_id, request.hold_id))
            case WalletSetStatus():
                wallets.add((project_id, request.wallet_id))
                wallet_owners = True
            case WalletRename() | WalletSetDescription():
                wallets.add((project_id, request.wallet_id))
            case WalletOpen():
                wallets.add((project_id, opened_wallet_id(request)))
                locked_assets.add((project_id, request.asset_id))
                locked_customers.add((project_id, request.customer_id))
            case SystemWalletOpen():
                wallets.add((project_id, opened_wallet_id(request)))
                locked_assets.add((project_id, request.asset_id))
            case CustomerSuspend() | CustomerDelete():
                locked_customers.add((project_id, request.customer_id))
                with_wallets.add((project_id, request.customer_id))
            case CustomerUpsert() | CustomerResume():
                locked_customers.add((project_id, request.customer_id))
            case AssetCreate():
                locked_assets.add((project_id, created_asset_id(request)))
            case AssetRename() | AssetDelete():
                locked_assets.add((project_id, request.asset_id))
            case ProjectCreate() | ProjectRename():
                locked_projects.add(project_id)
            case _:
                raise TypeError(f"unknown request type {request.type!r}")

    assets |= locked_assets
    customers |= locked_customers | with_wallets
    return StateKeys(
        project_ids=tuple(sorted(projects)),
        asset_keys=tuple(sorted(assets)),
        customer_keys=tuple(sorted(customers)),
        wallet_keys=tuple(sorted(wallets)),
        reference_keys=tuple(sorted(references)),
        customers_with_wallets=tuple(sorted(with_wallets)),
        locked_project_ids=tuple(sorted(locked_projects)),
        locked_asset_keys=tuple(sorted(locked_assets)),
        locked_customer_keys=tuple(sorted(locked_customers)),
        wallet_owners=wallet_owners,
        transaction_keys=tuple(sorted(transactions)),
        hold_keys=tuple(sorted(holds)),
    )
