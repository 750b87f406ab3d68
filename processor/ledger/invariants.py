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


_SIGN = {EntryType.Issue: 1, EntryType.Credit: 1, EntryType.Redeem: -1, EntryType.Debit: -1}


def check_balances_in_range(balances: Mapping[WalletKey, int]) -> None:
    """BALANCE_IN_RANGE: 0 <= balance <= MAX_BALANCE_MINOR for every wallet touched."""
    for key, balance in balances.items():
        if not 0 <= balance <= MAX_BALANCE_MINOR:
            raise InvariantViolation("BALANCE_IN_RANGE", f"wallet {key} balance {balance}")


def check_entries_match_balances(
    *,
    before: Mapping[WalletKey, int],
    after: Mapping[WalletKey, int],
    entries: Iterable[tuple[WalletKey, EntryType, int, int]],
) -> None:
    """ENTRIES_SUM_TO_BALANCE_CHANGE: per wallet, the signed sum of the transaction's entries
    equals its balance change, and each entry's balance_after follows from the previous.
    ENTRY_AMOUNT_POSITIVE: every entry amount is > 0."""
    running = dict(before)
    for key, entry_type, amount, balance_after in entries:
        if amount <= 0:
            raise InvariantViolation("ENTRY_AMOUNT_POSITIVE", f"wallet {key} amount {amount}")
        running[key] = running[key] + _SIGN[entry_type] * amount
        if running[key] != balance_after:
            raise InvariantViolation(
                "ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key} entry balance_after {balance_after}"
            )
    for key, balance in after.items():
        if running.get(key, before[key]) != balance:
            raise InvariantViolation("ENTRIES_SUM_TO_BALANCE_CHANGE", f"wallet {key}")


def check_value_conserved(*, issued: int, redeemed: int, before_total: int, after_total: int) -> None:
    """VALUE_CONSERVED: total balance changes by exactly issued - redeemed."""
    if after_total - before_total != issued - redeemed:
        raise InvariantViolation(
            "VALUE_CONSERVED", f"{after_total} - {before_total} != {issued} - {redeemed}"
        )
