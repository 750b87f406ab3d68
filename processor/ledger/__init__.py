"""The ledger engine: pure functions over in-memory state (imports only ``schemas``)."""

from processor.ledger.engine import apply_batch
from schemas.ids import NAMESPACE, derive_entity_id, derive_transaction_id
from processor.ledger.state_keys import StateKeys, state_keys
from processor.ledger.outcome import BatchOutcome, EntryRecord, ReferenceRecord, TransactionRecord
from processor.ledger.state import Asset, Customer, Hold, LedgerState, Project, Wallet

__all__ = [
    "NAMESPACE",
    "Asset",
    "BatchOutcome",
    "Customer",
    "EntryRecord",
    "Hold",
    "LedgerState",
    "Project",
    "ReferenceRecord",
    "StateKeys",
    "TransactionRecord",
    "Wallet",
    "apply_batch",
    "derive_entity_id",
    "derive_transaction_id",
    "state_keys",
]
