"""The operations of one transaction.run, posted on a tentative overlay of balances.

Pure: the wallets and assets a batch loaded in, the new balances and the postings out, or
`Rejected` naming the first operation that cannot be applied (and then nothing changes: the
engine records the transaction as Failed). The named invariants of a posting that succeeded
are checked here too (`check_postings`, under ``__debug__``).
"""

from collections.abc import Mapping, Sequence

from processor.ledger.invariants import check_balances_in_range, check_entries_match_balances, check_value_conserved
from processor.ledger.rejection import reject
from processor.ledger.state import Asset, AssetKey, Wallet, WalletKey
from schemas.amounts import format_minor_units, to_minor_units
from schemas.errors import ErrorCode
from schemas.limits import MAX_BALANCE_MINOR
from schemas.requests import Issue, Operation, Redeem, Transfer
from schemas.states import EntryType, WalletStatus

# (wallet, operation index, entry type, amount, balance after), in operation order
Posting = tuple[WalletKey, int, EntryType, int, int]


def _operable_wallet(wallets: Mapping[WalletKey, Wallet], project_id: str, wallet_id: str, index: int) -> Wallet:
    wallet = wallets.get((project_id, wallet_id))
    if wallet is None:
        reject(ErrorCode.WalletNotFound, f"wallet {wallet_id!r} not found", index)
    if wallet.status != WalletStatus.Open:
        if wallet.status == WalletStatus.Closed:
            reject(ErrorCode.WalletClosed, f"wallet {wallet_id!r} is closed", index)
        reject(ErrorCode.WalletNotOpen, f"wallet {wallet_id!r} is {wallet.status}", index)
    return wallet

def _minor(amount: object, fractions: int, index: int) -> int:
    try:
        return to_minor_units(amount, fractions=fractions)  # type: ignore[arg-type]
    except ValueError as exc:
        reject(ErrorCode.ValidationError, str(exc), index)

def _debited(wallet: Wallet, balance: int, amount: int, *, fractions: int, index: int, needs: str) -> int:
    """The balance after taking `amount` out; InsufficientFunds when it would go below zero."""
    after = balance - amount
    if after < 0:
        held, needed = format_minor_units(balance, fractions=fractions), format_minor_units(amount, fractions=fractions)
        reject(ErrorCode.InsufficientFunds, f"wallet {wallet.wallet_id!r} holds {held}, {needs} needs {needed}", index)
    return after


def _credited(wallet: Wallet, balance: int, amount: int, *, index: int) -> int:
    """The balance after putting `amount` in; BalanceLimitExceeded past MAX_BALANCE_MINOR."""
    after = balance + amount
    if after > MAX_BALANCE_MINOR:
        reject(ErrorCode.BalanceLimitExceeded, f"wallet {wallet.wallet_id!r} would exceed the balance limit", index)
    return after


def post_operations(
    operations: Sequence[Operation], project_id: str, *, wallets: Mapping[WalletKey, Wallet], assets: Mapping[AssetKey, Asset]
) -> tuple[dict[WalletKey, int], list[Posting]]:
    """Run the operations on a tentative overlay of balances; Rejected on the first failure."""
    balances: dict[WalletKey, int] = {}  # overlay: wallet key -> tentative balance
    postings: list[Posting] = []
    for index, operation in enumerate(operations):
        if type(operation) is Transfer:
            source = _operable_wallet(wallets, project_id, operation.from_wallet_id, index)
            target = _operable_wallet(wallets, project_id, operation.to_wallet_id, index)
            if source.asset_id != target.asset_id:
                reject(
                    ErrorCode.AssetMismatch,
                    f"wallet {source.wallet_id!r} holds {source.asset_id!r} but "
                    f"wallet {target.wallet_id!r} holds {target.asset_id!r}",
                    index,
                )
            fractions = assets[(project_id, source.asset_id)].fractions
            amount = _minor(operation.amount, fractions, index)
            source_balance = _debited(source, balances.get(source.key, source.balance), amount, fractions=fractions, index=index, needs="the transfer")
            target_balance = _credited(target, balances.get(target.key, target.balance), amount, index=index)
            balances[source.key] = source_balance
            balances[target.key] = target_balance
            postings.append((source.key, index, EntryType.Debit, amount, source_balance))
            postings.append((target.key, index, EntryType.Credit, amount, target_balance))
        elif type(operation) is Issue:
            wallet = _operable_wallet(wallets, project_id, operation.wallet_id, index)
            amount = _minor(operation.amount, assets[(project_id, wallet.asset_id)].fractions, index)
            balance = _credited(wallet, balances.get(wallet.key, wallet.balance), amount, index=index)
            balances[wallet.key] = balance
            postings.append((wallet.key, index, EntryType.Issue, amount, balance))
        else:
            assert type(operation) is Redeem, f"unknown operation {operation!r}"
            wallet = _operable_wallet(wallets, project_id, operation.wallet_id, index)
            fractions = assets[(project_id, wallet.asset_id)].fractions
            amount = _minor(operation.amount, fractions, index)
            balance = _debited(wallet, balances.get(wallet.key, wallet.balance), amount, fractions=fractions, index=index, needs="the redemption")
            balances[wallet.key] = balance
            postings.append((wallet.key, index, EntryType.Redeem, amount, balance))
    return balances, postings


def check_postings(*, before: Mapping[WalletKey, int], balances: Mapping[WalletKey, int], postings: list[Posting]) -> None:
    """BALANCE_IN_RANGE, ENTRIES_SUM_TO_BALANCE_CHANGE, ENTRY_AMOUNT_POSITIVE and VALUE_CONSERVED
    for one transaction's postings."""
    check_balances_in_range(balances)
    check_entries_match_balances(before=before, after=balances, entries=[(key, kind, amount, after) for key, _, kind, amount, after in postings])
    check_value_conserved(
        issued=sum(p[3] for p in postings if p[2] == EntryType.Issue),
        redeemed=sum(p[3] for p in postings if p[2] == EntryType.Redeem),
        before_total=sum(before.values()),
        after_total=sum(balances.values()),
    )


def opposite(operation: Operation) -> Operation:
    """The operation that undoes `operation`: Issue <-> Redeem, a Transfer the other way."""
    if type(operation) is Transfer:
        return Transfer(type="Transfer", from_wallet_id=operation.to_wallet_id, to_wallet_id=operation.from_wallet_id, amount=operation.amount)
    if type(operation) is Issue:
        return Redeem(type="Redeem", wallet_id=operation.wallet_id, amount=operation.amount)
    assert type(operation) is Redeem, f"unknown operation {operation!r}"
    return Issue(type="Issue", wallet_id=operation.wallet_id, amount=operation.amount)
