"""Result models: what the processor publishes for every request it processes.

Amounts in results are decimal strings in asset units with exactly the asset's scale
(a balance of 500 minor units of an asset with fractions=100 is ``"5.00"``).
"""

from datetime import datetime
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field

from schemas.amounts import DECIMAL_STRING_PATTERN
from schemas.errors import ErrorCode
from schemas.requests import Operation
from schemas.states import CustomerStatus, EntryType, HoldStatus, Status, WalletStatus

__all__ = [
    "AssetView",
    "CustomerStatus",
    "CustomerView",
    "EntryType",
    "EntryView",
    "ErrorInfo",
    "HoldStatus",
    "HoldView",
    "OperationView",
    "ProjectView",
    "Result",
    "Status",
    "TransactionView",
    "WalletStatus",
    "WalletView",
]

DecimalString = Annotated[str, Field(pattern=DECIMAL_STRING_PATTERN)]
# The client's metadata as it was given (schemas.requests.Metadata); {} for none, and in
# results stored before metadata existed.
MetadataView = Annotated[dict[str, str], Field(default_factory=dict)]

# A transaction's operations are echoed back as they were requested.
OperationView = Operation


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(_View):
    code: ErrorCode
    message: str
    operation_index: int | None = None  # 0-based index of the failing operation


class AssetView(_View):
    project_id: str
    asset_id: str
    code: str
    name: str
    fractions: int
    in_use: bool


class ProjectView(_View):
    project_id: str
    name: str
    created_at: datetime
    # All assets of the project where the producer knows them (project.create: [];
    # reads). None where it does not (a project.rename result from the processor).
    assets: list[AssetView] | None = None


class CustomerView(_View):
    project_id: str
    customer_id: str
    name: str
    description: str
    status: CustomerStatus
    metadata: MetadataView


class WalletView(_View):
    project_id: str
    wallet_id: str
    asset_id: str
    customer_id: str | None  # None: a system wallet
    name: str
    description: str
    status: WalletStatus
    balance: DecimalString
    created_at: datetime
    # Reserved by Active holds, and balance - held. None only in results stored before holds.
    held: DecimalString | None = None
    available: DecimalString | None = None
    metadata: MetadataView


class EntryView(_View):
    wallet_id: str
    operation_index: int
    type: EntryType
    amount: DecimalString
    balance_after: DecimalString
    available_after: DecimalString | None = None  # None only in results stored before holds


class HoldView(_View):
    project_id: str
    hold_id: str
    wallet_id: str  # the wallet whose amount is held
    to_wallet_id: str | None  # None: a capture redeems
    amount: DecimalString  # held while Active
    captured: DecimalString | None  # what the capture moved (Captured only)
    status: HoldStatus
    expires_at: datetime | None
    created_by: str  # the transaction that made the hold
    finished_by: str | None  # the transaction that captured, voided or expired it
    created_at: datetime
    finished_at: datetime | None
    metadata: MetadataView  # the metadata of the transaction that made the hold


class TransactionView(_View):
    project_id: str
    transaction_id: str
    reference_id: str
    description: str
    status: Status
    operations: list[OperationView]
    entries: list[EntryView]  # empty for a Failed transaction
    error: ErrorInfo | None = None
    created_at: datetime
    reverses: str | None = None  # the transaction this one reverses (transaction.reverse)
    reversed_by: str | None = None  # the Completed transaction that reversed this one
    metadata: MetadataView


class Result(_View):
    """The outcome of one request. Published keyed by ``"{project_id}/{reference_id}"``."""

    reference_id: str
    project_id: str | None
    type: str
    status: Status
    error: ErrorInfo | None = None
    processed_at: datetime
    project: ProjectView | None = None
    asset: AssetView | None = None
    customer: CustomerView | None = None
    wallet: WalletView | None = None
    wallets: list[WalletView] | None = None  # e.g. the wallets a customer.suspend suspended
    transaction: TransactionView | None = None
    hold: HoldView | None = None  # hold.create / capture / void / expire
    # DuplicateReferenceId: the stored result of the first request with this reference ID.
    original: Optional["Result"] = None


Result.model_rebuild()


# --- keys on the reply topic ------------------------------------------------------------


def result_key(*, project_id: str | None, reference_id: str) -> str:
    """The key a result is published (and compacted) under: "{project_id}/{reference_id}".

    A result without a project (a request whose project_id could not be read) is keyed
    "/{reference_id}": never a real key, since project IDs are non-empty and have no "/".
    """
    return f"{project_id or ''}/{reference_id}"


# --- duplicates on the reply topic ------------------------------------------------------
# The reply topic is compacted by key, so every record under "{project_id}/{reference_id}"
# carries the reference's real answer. A repeat of a spent reference is answered with that
# same value plus the header DUPLICATE_HEADER, whose value says what the repeat was.
DUPLICATE_HEADER = "duplicate"
SAME_REQUEST = "same-request"  # byte-for-byte the request that spent the reference: a retry
DIFFERENT_REQUEST = "different-request"  # another request reusing the reference: a client bug
DUPLICATE_KINDS = (SAME_REQUEST, DIFFERENT_REQUEST)


def duplicate_result(original: Result, *, kind: str, request_type: str, processed_at: datetime) -> Result:
    """The seed API's answer to a repeat, from a record marked with DUPLICATE_HEADER: Failed,
    DuplicateReferenceId, with the reference's real answer as `original`."""
    if kind not in DUPLICATE_KINDS:
        raise ValueError(f"{DUPLICATE_HEADER} header {kind!r} is not one of {', '.join(DUPLICATE_KINDS)}")
    where = f" in project {original.project_id!r}" if original.project_id else ""
    message = f"reference ID {original.reference_id!r} was already used{where}"
    if kind == DIFFERENT_REQUEST:
        message += " by a different request (this request's payload differs from the one that spent it)"
    return Result(
        reference_id=original.reference_id,
        project_id=original.project_id,
        type=request_type or original.type,
        status=Status.Failed,
        error=ErrorInfo(code=ErrorCode.DuplicateReferenceId, message=message),
        processed_at=processed_at,
        original=original,
    )
