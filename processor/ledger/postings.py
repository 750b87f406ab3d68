"""The operations of one transaction, posted on a tentative overlay of wallets and holds.

Pure: the wallets, assets and holds a batch loaded in, the changed wallets, holds and the
postings out, or `Rejected` naming the first operation that cannot be applied (and then nothing
changes: the engine records the transaction as Failed). The named invariants of a posting that
succeeded are checked here too (`check_postings`, under ``__debug__``).

Holds (docs/holds-and-reversals.md): a Hold raises a wallet's `held` and leaves its balance;
every debit needs `available = balance - held`; a Capture releases the whole hold and then
moves the captured amount; a Void (or the hold's expiry) releases it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from processor.ledger.invariants import check_balances_in_range, check_entries_match_balances, check_held_in_range, check_value_conserved
from processor.ledger.rejection import reject
from processor.ledger.state import Asset, AssetKey, Hold as HoldState, HoldKey, Metadata, Wallet, WalletKey
from schemas.amounts import format_minor_units, to_minor_units
from schemas.errors import ErrorCode
from schemas.limits import MAX_BALANCE_MINOR
from schemas.requests import Capture, Hold, Issue, Operation, Redeem, Transfer, Void
from schemas.states import EntryType, HoldStatus, WalletStatus

# (wallet, operation index, entry type, amount, balance after, held after), in operation order
Posting = tuple[WalletKey, int, EntryType, int, int, int]


@dataclass(slots=True, kw_only=True)
class Posted:
    """What a transaction's operations change: the new balance and held of every wallet they
    touch, the holds they create or finish (final state), and the postings in order."""

    balances: dict[WalletKey, int] = field(default_factory=dict)
    held: dict[WalletKey, int] = field(default_factory=dict)
    holds: dict[HoldKey, HoldState] = field(default_factory=dict)
    postings: list[Posting] = field(default_factory=list)


@dataclass(slots=True, frozen=True, kw_only=True)
class Context:
    """What every operation of one transaction is posted against."""

    project_id: str
    transaction_id: str
    wallets: Mapping[WalletKey, Wallet]
    assets: Mapping[AssetKey, Asset]
    holds: Mapping[HoldKey, HoldState]
    log_time: datetime  # the request's time in the log: decides expiry
    now: datetime  # the batch's clock: stamps the holds
    metadata: Metadata  # the transaction's: the holds it makes carry it
    expiring: bool = False  # the Voids are the holds' expiry (status Expired)


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


class _Overlay:
    """Tentative balances, held amounts and holds of one transaction, over the loaded ones."""

    def __init__(self, context: Context) -> None:
        self.c = context
        self.posted = Posted()

    def balance(self, wallet: Wallet) -> int:
        return self.posted.balances.get(wallet.key, wallet.balance)

    def held(self, wallet: Wallet) -> int:
        return self.posted.held.get(wallet.key, wallet.held)

    def fractions(self, wallet: Wallet) -> int:
        return self.c.assets[(wallet.project_id, wallet.asset_id)].fractions

    def post(self, wallet: Wallet, index: int, kind: EntryType, amount: int, *, balance: int, held: int) -> None:
        self.posted.balances[wallet.key] = balance
        self.posted.held[wallet.key] = held
        self.posted.postings.append((wallet.key, index, kind, amount, balance, held))

    def debit(self, wallet: Wallet, index: int, kind: EntryType, amount: int, *, needs: str) -> None:
        """Take `amount` out of the wallet's available amount; InsufficientFunds when short."""
        balance, held = self.balance(wallet), self.held(wallet)
        if balance - held < amount:
            fractions = self.fractions(wallet)
            available, needed = format_minor_units(balance - held, fractions=fractions), format_minor_units(amount, fractions=fractions)
            detail = f" ({format_minor_units(held, fractions=fractions)} held)" if held else ""
            reject(ErrorCode.InsufficientFunds, f"wallet {wallet.wallet_id!r} has {available} available{detail}, {needs} needs {needed}", index)
        self.post(wallet, index, kind, amount, balance=balance - amount, held=held)

    def credit(self, wallet: Wallet, index: int, kind: EntryType, amount: int) -> None:
        """Put `amount` in; BalanceLimitExceeded past MAX_BALANCE_MINOR."""
        after = self.balance(wallet) + amount
        if after > MAX_BALANCE_MINOR:
            reject(ErrorCode.BalanceLimitExceeded, f"wallet {wallet.wallet_id!r} would exceed the balance limit", index)
        self.post(wallet, index, kind, amount, balance=after, held=self.held(wallet))

    def hold(self, key: HoldKey) -> HoldState | None:
        return self.posted.holds.get(key) or self.c.holds.get(key)

    def finish(self, hold: HoldState, index: int, status: HoldStatus, *, captured: int | None = None) -> Wallet:
        """Release the whole hold (a Release entry) and record how it ended."""
        c = self.c
        wallet = c.wallets[hold.wallet_key]  # loader rule 8: a hold's wallets are loaded
        self.post(wallet, index, EntryType.Release, hold.amount, balance=self.balance(wallet), held=self.held(wallet) - hold.amount)
        self.posted.holds[hold.key] = replace(hold, status=status, captured=captured, finished_by=c.transaction_id, finished_at=c.now)
        return wallet


def _same_asset(source: Wallet, target: Wallet, index: int) -> None:
    if source.asset_id != target.asset_id:
        reject(
            ErrorCode.AssetMismatch,
            f"wallet {source.wallet_id!r} holds {source.asset_id!r} but wallet {target.wallet_id!r} holds {target.asset_id!r}",
            index,
        )


def _transfer(o: _Overlay, operation: Transfer, index: int) -> None:
    wallets, project_id = o.c.wallets, o.c.project_id
    source = _operable_wallet(wallets, project_id, operation.from_wallet_id, index)
    target = _operable_wallet(wallets, project_id, operation.to_wallet_id, index)
    _same_asset(source, target, index)
    amount = _minor(operation.amount, o.fractions(source), index)
    o.debit(source, index, EntryType.Debit, amount, needs="the transfer")
    o.credit(target, index, EntryType.Credit, amount)


def _issue(o: _Overlay, operation: Issue, index: int) -> None:
    wallet = _operable_wallet(o.c.wallets, o.c.project_id, operation.wallet_id, index)
    o.credit(wallet, index, EntryType.Issue, _minor(operation.amount, o.fractions(wallet), index))


def _redeem(o: _Overlay, operation: Redeem, index: int) -> None:
    wallet = _operable_wallet(o.c.wallets, o.c.project_id, operation.wallet_id, index)
    o.debit(wallet, index, EntryType.Redeem, _minor(operation.amount, o.fractions(wallet), index), needs="the redemption")


def _hold(o: _Overlay, operation: Hold, index: int) -> None:
    c = o.c
    assert operation.hold_id is not None, "the engine resolves every hold ID before posting"
    source = _operable_wallet(c.wallets, c.project_id, operation.wallet_id, index)
    if operation.to_wallet_id is not None:
        _same_asset(source, _operable_wallet(c.wallets, c.project_id, operation.to_wallet_id, index), index)
    if o.hold((c.project_id, operation.hold_id)) is not None:
        reject(ErrorCode.HoldAlreadyExists, f"hold {operation.hold_id!r} already exists", index)
    if operation.expires_at is not None and operation.expires_at <= c.log_time:
        reject(ErrorCode.ValidationError, f"expires_at {operation.expires_at.isoformat()} is not after the request's log time {c.log_time.isoformat()}", index)
    amount = _minor(operation.amount, o.fractions(source), index)
    balance, held = o.balance(source), o.held(source)
    if balance - held < amount:
        fractions = o.fractions(source)
        reject(
            ErrorCode.InsufficientFunds,
            f"wallet {source.wallet_id!r} has {format_minor_units(balance - held, fractions=fractions)} available, the hold needs {format_minor_units(amount, fractions=fractions)}",
            index,
        )
    o.post(source, index, EntryType.Hold, amount, balance=balance, held=held + amount)
    hold = HoldState(
        project_id=c.project_id, hold_id=operation.hold_id, wallet_id=source.wallet_id, to_wallet_id=operation.to_wallet_id, amount=amount, captured=None,
        status=HoldStatus.Active, expires_at=operation.expires_at, created_by=c.transaction_id, finished_by=None, created_at=c.now, finished_at=None,
        metadata=c.metadata,
    )  # fmt: skip
    o.posted.holds[hold.key] = hold


def _active_hold(o: _Overlay, hold_id: str, index: int) -> HoldState:
    """The named hold, Active and not past its expiry; HoldNotFound / HoldExpired / HoldNotActive."""
    hold = o.hold((o.c.project_id, hold_id))
    if hold is None:
        reject(ErrorCode.HoldNotFound, f"hold {hold_id!r} not found", index)
    expired = hold.status is HoldStatus.Expired or (
        hold.status is HoldStatus.Active and not o.c.expiring and hold.expires_at is not None and hold.expires_at <= o.c.log_time
    )
    if expired:
        reject(ErrorCode.HoldExpired, f"hold {hold_id!r} expired at {hold.expires_at.isoformat() if hold.expires_at else '?'}", index)
    if hold.status is not HoldStatus.Active:
        reject(ErrorCode.HoldNotActive, f"hold {hold_id!r} is {hold.status} (by transaction {hold.finished_by!r})", index)
    return hold


def _capture(o: _Overlay, operation: Capture, index: int) -> None:
    c = o.c
    hold = _active_hold(o, operation.hold_id, index)
    source = _operable_wallet(c.wallets, c.project_id, hold.wallet_id, index)  # a suspended wallet moves no value
    target = None if hold.to_wallet_id is None else _operable_wallet(c.wallets, c.project_id, hold.to_wallet_id, index)
    fractions = o.fractions(source)
    amount = hold.amount if operation.amount is None else _minor(operation.amount, fractions, index)
    if amount > hold.amount:
        reject(
            ErrorCode.HoldAmountExceeded,
            f"hold {hold.hold_id!r} holds {format_minor_units(hold.amount, fractions=fractions)}, the capture asks {format_minor_units(amount, fractions=fractions)}",
            index,
        )
    o.finish(hold, index, HoldStatus.Captured, captured=amount)
    if target is None:
        o.debit(source, index, EntryType.Redeem, amount, needs="the capture")
    else:
        o.debit(source, index, EntryType.Debit, amount, needs="the capture")
        o.credit(target, index, EntryType.Credit, amount)


def _void(o: _Overlay, operation: Void, index: int) -> None:
    # Allowed while the wallet is Suspended: releasing a reservation moves no value.
    o.finish(_active_hold(o, operation.hold_id, index), index, HoldStatus.Expired if o.c.expiring else HoldStatus.Voided)


_POSTERS = {Transfer: _transfer, Issue: _issue, Redeem: _redeem, Hold: _hold, Capture: _capture, Void: _void}


def post_operations(operations: Sequence[Operation], context: Context) -> Posted:
    """Run the operations in order on a tentative overlay; Rejected on the first failure."""
    overlay = _Overlay(context)
    for index, operation in enumerate(operations):
        _POSTERS[type(operation)](overlay, operation, index)  # type: ignore[operator]
    return overlay.posted


def check_postings(*, before: Mapping[WalletKey, Wallet], posted: Posted) -> None:
    """BALANCE_IN_RANGE, AVAILABLE_NOT_NEGATIVE, ENTRIES_SUM_TO_BALANCE_CHANGE,
    ENTRY_AMOUNT_POSITIVE and VALUE_CONSERVED for one transaction's postings."""
    balances, postings = posted.balances, posted.postings
    check_balances_in_range(balances)
    check_held_in_range(balances=balances, held=posted.held)
    check_entries_match_balances(
        before={key: (before[key].balance, before[key].held) for key in balances},
        after={key: (balances[key], posted.held[key]) for key in balances},
        entries=[(key, kind, amount, after, held) for key, _, kind, amount, after, held in postings],
    )
    check_value_conserved(
        issued=sum(p[3] for p in postings if p[2] == EntryType.Issue),
        redeemed=sum(p[3] for p in postings if p[2] == EntryType.Redeem),
        before_total=sum(before[key].balance for key in balances),
        after_total=sum(balances.values()),
    )


def opposite(operation: Operation) -> Operation:
    """The operation that undoes `operation`: Issue <-> Redeem, a Transfer the other way.
    Holds have none: a transaction with hold operations is not reversible."""
    if type(operation) is Transfer:
        return Transfer(type="Transfer", from_wallet_id=operation.to_wallet_id, to_wallet_id=operation.from_wallet_id, amount=operation.amount)
    if type(operation) is Issue:
        return Redeem(type="Redeem", wallet_id=operation.wallet_id, amount=operation.amount)
    assert type(operation) is Redeem, f"no opposite of {operation!r}"
    return Issue(type="Issue", wallet_id=operation.wallet_id, amount=operation.amount)
