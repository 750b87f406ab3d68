"""Named invariants, checked by the engine under ``__debug__`` (i.e. unless python -O).

A violation is a bug in the engine, never a client error: it raises
``InvariantViolation``, which the engine turns into an InternalError for that request.
"""

from collections.abc import Iterable, Mapping

from processor.ledger.state import Wallet, WalletKey
from schemas.limits import MAX_BALANCE_MINOR
from schemas.states import EntryType


class InvariantViolation(AssertionError):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name


# (sign on the balance, sign on the held amount) of each entry type
_SIGN = {
    EntryType.Issue: (1, 0),
    EntryType.Credit: (1, 0),
    EntryType.Redeem: (-1, 0),
    EntryType.Debit: (-1, 0),
    EntryType.Hold: (0, 1),
    EntryType.Release: (0, -1),
}


def check_amounts_in_range(*, balances: Mapping[WalletKey, int], held: Mapping[WalletKey, int]) -> None:
    """BALANCE_IN_RANGE: 0 <= balance <= MAX_BALANCE_MINOR for every wallet touched.
    AVAILABLE_NOT_NEGATIVE: 0 <= held <= balance (holds never let `available` go below zero)."""
    for key, balance in balances.items():
        if not 0 <= balance <= MAX_BALANCE_MINOR:
            raise InvariantViolation("BALANCE_IN_RANGE", f"wallet {key} balance {balance}")
        if not 0 <= held[key] <= balance:
            raise InvariantViolation("AVAILABLE_NOT_NEGATIVE", f"wallet {key} held {held[key]} of balance {balance}")


def check_entries_match_balances(
    *,
    before: Mapping[WalletKey, Wallet],
    balances: Mapping[WalletKey, int],
    held: Mapping[WalletKey, int],
    postings: Iterable[tuple[WalletKey, int, EntryType, int, int, int]],
) -> None:
    """ENTRIES_SUM_TO_BALANCE_CHANGE: per wallet, the signed sums of the transaction's entries
    equal its balance change and its held change, and each entry's balance and held after
    follow from the previous. ENTRY_AMOUNT_POSITIVE: every entry amount is > 0. `postings`:
    (wallet, operation index, entry type, amount, balance after, held after)."""
    running: dict[WalletKey, tuple[int, int]] = {}
    for key, _, entry_type, amount, balance_after, held_after in postings:
        if amount <= 0:
            raise InvariantViolation("ENTRY_AMOUNT_POSITIVE", f"wallet {key} amount {amount}")
        on_balance, on_held = _SIGN[entry_type]
        current = running.get(key)
        balance, held_now = (before[key].balance, before[key].held) if current is None else current
        expected = (balance + on_balance * amount, held_now + on_held * amount)
        if expected != (balance_after, held_after):
            raise InvariantViolation("ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key} entry after {(balance_after, held_after)}, expected {expected}")
        running[key] = expected
    for key, balance in balances.items():
        if running.get(key, (before[key].balance, before[key].held)) != (balance, held[key]):
            raise InvariantViolation("ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key}")


def check_value_conserved(*, issued: int, redeemed: int, before_total: int, after_total: int) -> None:
    """VALUE_CONSERVED: total balance changes by exactly issued - redeemed."""
    if after_total - before_total != issued - redeemed:
        raise InvariantViolation(
            "VALUE_CONSERVED", f"{after_total} - {before_total} != {issued} - {redeemed}"
        )
