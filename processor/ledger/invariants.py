"""Named invariants, checked by the engine under ``__debug__`` (i.e. unless python -O).

A violation is a bug in the engine, never a client error: it raises
``InvariantViolation``, which the engine turns into an InternalError for that request.
"""

from collections.abc import Iterable, Mapping

from processor.ledger.state import WalletKey
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


def check_balances_in_range(balances: Mapping[WalletKey, int]) -> None:
    """BALANCE_IN_RANGE: 0 <= balance <= MAX_BALANCE_MINOR for every wallet touched."""
    for key, balance in balances.items():
        if not 0 <= balance <= MAX_BALANCE_MINOR:
            raise InvariantViolation("BALANCE_IN_RANGE", f"wallet {key} balance {balance}")


def check_held_in_range(*, balances: Mapping[WalletKey, int], held: Mapping[WalletKey, int]) -> None:
    """AVAILABLE_NOT_NEGATIVE: 0 <= held <= balance for every wallet touched (holds never let
    `available` go below zero)."""
    for key, balance in balances.items():
        if not 0 <= held[key] <= balance:
            raise InvariantViolation("AVAILABLE_NOT_NEGATIVE", f"wallet {key} held {held[key]} of balance {balance}")


def check_entries_match_balances(
    *,
    before: Mapping[WalletKey, tuple[int, int]],
    after: Mapping[WalletKey, tuple[int, int]],
    entries: Iterable[tuple[WalletKey, EntryType, int, int, int]],
) -> None:
    """ENTRIES_SUM_TO_BALANCE_CHANGE: per wallet, the signed sums of the transaction's entries
    equal its balance change and its held change, and each entry's balance_after and held after
    follow from the previous. ENTRY_AMOUNT_POSITIVE: every entry amount is > 0.
    `before` / `after`: wallet -> (balance, held)."""
    running = dict(before)
    for key, entry_type, amount, balance_after, held_after in entries:
        if amount <= 0:
            raise InvariantViolation("ENTRY_AMOUNT_POSITIVE", f"wallet {key} amount {amount}")
        on_balance, on_held = _SIGN[entry_type]
        balance, held = running[key]
        running[key] = (balance + on_balance * amount, held + on_held * amount)
        if running[key] != (balance_after, held_after):
            raise InvariantViolation(
                "ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key} entry after {(balance_after, held_after)}, expected {running[key]}"
            )
    for key, amounts in after.items():
        if running.get(key, before[key]) != amounts:
            raise InvariantViolation("ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key}")


def check_value_conserved(*, issued: int, redeemed: int, before_total: int, after_total: int) -> None:
    """VALUE_CONSERVED: total balance changes by exactly issued - redeemed."""
    if after_total - before_total != issued - redeemed:
        raise InvariantViolation(
            "VALUE_CONSERVED", f"{after_total} - {before_total} != {issued} - {redeemed}"
        )
