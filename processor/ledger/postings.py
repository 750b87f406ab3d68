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
from dataclasses import replace
from datetime import datetime
from typing import NoReturn

from processor.ledger.invariants import check_amounts_in_range, check_entries_match_balances, check_value_conserved
from processor.ledger.rejection import reject
from processor.ledger.state import Asset, AssetKey, Hold as HoldState, HoldKey, Metadata, Wallet, WalletKey
from schemas.amounts import format_minor_units, to_minor_units
from schemas.errors import ErrorCode
from schemas.limits import MAX_BALANCE_MINOR
from schemas.requests import Capture, Hold, Issue, Operation, Redeem, Transfer, Void
from schemas.states import EntryType, HoldStatus, WalletStatus

# (wallet, operation index, entry type, amount, balance after, held after), in operation order
Posting = tuple[WalletKey, int, EntryType, int, int, int]


class Posted:
    """What a transaction's operations change: the new balance and held of every wallet they
    touch, the holds they create or finish (final state), and the postings in order.
    (Plain classes with slots, here and below: one of each per transaction, and a dataclass's
    generated __init__ with default factories cost ~10 us of the hot path.)"""

    __slots__ = ("balances", "held", "holds", "postings")

    def __init__(self) -> None:
        self.balances: dict[WalletKey, int] = {}
        self.held: dict[WalletKey, int] = {}
        self.holds: dict[HoldKey, HoldState] = {}
        self.postings: list[Posting] = []


class Context:
    """What every operation of one transaction is posted against."""

    __slots__ = ("project_id", "transaction_id", "wallets", "assets", "holds", "log_time", "now", "metadata", "expiring")

    def __init__(
        self, *, project_id: str, transaction_id: str, wallets: Mapping[WalletKey, Wallet], assets: Mapping[AssetKey, Asset],
        holds: Mapping[HoldKey, HoldState], log_time: datetime, now: datetime, metadata: Metadata, expiring: bool = False,
    ) -> None:  # fmt: skip
        self.project_id = project_id
        self.transaction_id = transaction_id
        self.wallets = wallets
        self.assets = assets
        self.holds = holds
        self.log_time = log_time  # the request's time in the log: decides expiry
        self.now = now  # the batch's clock: stamps the holds
        self.metadata = metadata  # the transaction's: the holds it makes carry it
        self.expiring = expiring  # the Voids are the holds' expiry (status Expired)


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

    __slots__ = ("c", "posted", "_balances", "_held", "_postings")

    def __init__(self, context: Context) -> None:
        self.c = context
        self.posted = posted = Posted()
        self._balances, self._held, self._postings = posted.balances, posted.held, posted.postings

    def balance(self, wallet: Wallet) -> int:
        return self._balances.get(wallet.key, wallet.balance)

    def held(self, wallet: Wallet) -> int:
        return self._held.get(wallet.key, wallet.held)

    def fractions(self, wallet: Wallet) -> int:
        return self.c.assets[(wallet.project_id, wallet.asset_id)].fractions

    def post(self, wallet: Wallet, index: int, kind: EntryType, amount: int, *, balance: int, held: int) -> None:
        key = wallet.key
        self._balances[key] = balance
        self._held[key] = held
        self._postings.append((key, index, kind, amount, balance, held))

    def debit(self, wallet: Wallet, index: int, kind: EntryType, amount: int, *, needs: str) -> None:
        """Take `amount` out of the wallet's available amount; InsufficientFunds when short.
        (Written out, not through balance() / held() / post(): two of these per transfer.)"""
        key = wallet.key
        balance, held = self._balances.get(key, wallet.balance), self._held.get(key, wallet.held)
        if balance - held < amount:
            self._short(wallet, balance=balance, held=held, amount=amount, index=index, needs=needs)
        balance -= amount
        self._balances[key] = balance
        self._held[key] = held
        self._postings.append((key, index, kind, amount, balance, held))

    def _short(self, wallet: Wallet, *, balance: int, held: int, amount: int, index: int, needs: str) -> NoReturn:
        fractions = self.fractions(wallet)
        available, needed = format_minor_units(balance - held, fractions=fractions), format_minor_units(amount, fractions=fractions)
        detail = f" ({format_minor_units(held, fractions=fractions)} held)" if held else ""
        reject(ErrorCode.InsufficientFunds, f"wallet {wallet.wallet_id!r} has {available} available{detail}, {needs} needs {needed}", index)

    def credit(self, wallet: Wallet, index: int, kind: EntryType, amount: int) -> None:
        """Put `amount` in; BalanceLimitExceeded past MAX_BALANCE_MINOR."""
        key = wallet.key
        balance = self._balances.get(key, wallet.balance) + amount
        if balance > MAX_BALANCE_MINOR:
            reject(ErrorCode.BalanceLimitExceeded, f"wallet {wallet.wallet_id!r} would exceed the balance limit", index)
        held = self._held.get(key, wallet.held)
        self._balances[key] = balance
        self._held[key] = held
        self._postings.append((key, index, kind, amount, balance, held))

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
    if source.asset_id != target.asset_id:
        _same_asset(source, target, index)
    amount = _minor(operation.amount, o.c.assets[(project_id, source.asset_id)].fractions, index)
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
        o._short(source, balance=balance, held=held, amount=amount, index=index, needs="the hold")
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
    posters = _POSTERS
    for index, operation in enumerate(operations):
        posters[type(operation)](overlay, operation, index)  # type: ignore[operator]
    return overlay.posted


def check_postings(*, before: Mapping[WalletKey, Wallet], posted: Posted) -> None:
    """BALANCE_IN_RANGE, AVAILABLE_NOT_NEGATIVE, ENTRIES_SUM_TO_BALANCE_CHANGE,
    ENTRY_AMOUNT_POSITIVE and VALUE_CONSERVED for one transaction's postings."""
    balances = posted.balances
    check_entries_match_balances(before=before, balances=balances, held=posted.held, postings=posted.postings)
    check_amounts_in_range(balances=balances, held=posted.held)
    issued = redeemed = 0
    for _, _, kind, amount, _, _ in posted.postings:
        if kind is EntryType.Issue:
            issued += amount
        elif kind is EntryType.Redeem:
            redeemed += amount
    check_value_conserved(
        issued=issued, redeemed=redeemed, before_total=sum(before[key].balance for key in balances), after_total=sum(balances.values())
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
