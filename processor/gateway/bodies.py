"""HTTP bodies: what clients send (request bodies) and what the gateway answers besides a
processor's `Result` (pages, views, Pending, Health).

Request bodies carry what the path does not: the request's `type`, `project_id` and path IDs
come from the route. Field types are the contract's own (schemas.requests), so the gateway
refuses exactly what the processor would refuse, before anything is published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from schemas.limits import DEFAULT_FRACTIONS, MAX_OPERATIONS_PER_TRANSACTION
from schemas.requests import (
    AssetCode,
    AssetId,
    CustomerId,
    Description,
    Fractions,
    HoldId,
    Metadata,
    Name,
    Operation,
    ProjectId,
    ReferenceId,
    WalletId,
)
from schemas.amounts import Amount
from schemas.results import EntryView
from schemas.states import WalletStatus

T = TypeVar("T")

MAX_SIGNING_KEY_LABEL_LEN = 200
_FREE_TEXT: TypeAdapter[str] = TypeAdapter(Description)


def _free_text(value: str) -> str:
    """The contract's rule for free text (schemas.requests.Description: no NUL, no lone
    surrogate), for a field that is not the contract's: what PostgreSQL text cannot hold is
    refused as it would be in a name or description."""
    try:
        return _FREE_TEXT.validate_python(value)
    except ValidationError as error:
        raise ValueError(str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None


# The label's own length first (its message names 200), then the contract's text rule.
SigningKeyLabel = Annotated[str, StringConstraints(max_length=MAX_SIGNING_KEY_LABEL_LEN), AfterValidator(_free_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_id: ReferenceId | None = Field(
        default=None,
        description="idempotency key, unique per project; the Idempotency-Key header may carry it instead; generated when absent",
    )


class ProjectCreateBody(_Body):
    project_id: ProjectId | None = Field(default=None, description="derived from the reference ID when absent")
    name: Name


class NameBody(_Body):
    name: Name


class WalletRenameBody(NameBody):
    """`wallet.rename`: the name, and metadata to replace the wallet's whole (absent: unchanged)."""

    metadata: Annotated[Metadata | None, Field(description="replaces the wallet's metadata whole; absent: unchanged")] = None


class DescriptionBody(_Body):
    description: Description


class ReversalBody(_Body):
    """A reversal's optional reference ID (or Idempotency-Key), description and metadata."""

    description: Description | None = None
    metadata: Annotated[Metadata | None, Field(description="the reversal's own (the original's is not copied)")] = None


class VoidBody(_Body):
    """A void's optional reference ID (or Idempotency-Key) and description."""

    description: Description | None = None


class HoldBody(_Body):
    """`hold.create`: reserve `amount` of `wallet_id`, optionally toward `to_wallet_id`, until `expires_at`."""

    hold_id: HoldId | None = Field(default=None, description="derived from the reference ID when absent")
    wallet_id: WalletId
    amount: Amount
    to_wallet_id: WalletId | None = None
    expires_at: AwareDatetime | None = None
    description: Description | None = None
    metadata: Annotated[Metadata | None, Field(description="on the hold and on its transaction")] = None


class CaptureBody(_Body):
    """`hold.capture`: all of the hold, or `amount` of it (the rest is released)."""

    amount: Amount | None = None
    description: Description | None = None


class ReferenceBody(_Body):
    """Only the optional reference ID (suspend, resume)."""


class AssetCreateBody(_Body):
    asset_id: AssetId | None = Field(default=None, description="derived from the reference ID when absent")
    code: AssetCode
    name: Name
    fractions: Fractions = DEFAULT_FRACTIONS


CustomerMetadata = Annotated[Metadata | None, Field(description="replaces the customer's metadata whole; absent: unchanged")]


class CustomerCreateBody(_Body):
    customer_id: CustomerId
    name: Name | None = None
    description: Description | None = None
    metadata: CustomerMetadata = None


class CustomerUpdateBody(_Body):
    name: Name | None = None
    description: Description | None = None
    metadata: CustomerMetadata = None


class WalletOpenBody(_Body):
    customer_id: CustomerId
    asset_id: AssetId
    wallet_id: WalletId | None = Field(default=None, description="derived from the reference ID when absent")
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


class SystemWalletOpenBody(_Body):
    asset_id: AssetId
    wallet_id: WalletId | None = Field(default=None, description="derived from the reference ID when absent")
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


class WalletStatusBody(_Body):
    status: WalletStatus


class TransactionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_id: ReferenceId = Field(description="required: the idempotency key of the transaction, unique per project")
    description: Description | None = None
    metadata: Metadata | None = None
    operations: Annotated[list[Operation], Field(min_length=1, max_length=MAX_OPERATIONS_PER_TRANSACTION)]


class SigningKeyCreateBody(BaseModel):
    """A new signing key of the path's project. Not a Kafka write: no reference ID (a retry makes
    another key)."""

    model_config = ConfigDict(extra="forbid")

    label: SigningKeyLabel | None = Field(
        default=None, description=f"a note to recognise the key by (at most {MAX_SIGNING_KEY_LABEL_LEN} characters)"
    )


# --- read views ------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    """One page of a list, in a stable order; `has_more` says whether a next page exists."""

    items: list[T]
    page: int
    page_size: int
    has_more: bool


class WalletEntryView(EntryView):
    """One entry of a wallet's ledger."""

    entry_id: int
    transaction_id: str
    created_at: datetime


class WalletBalanceView(BaseModel):
    """A wallet's balance, held and available as of an instant, from its entries (each carries
    balance_after and available_after)."""

    project_id: str
    wallet_id: str
    asset_id: str
    at: datetime
    balance: str
    held: str
    available: str


class WalletStatementView(BaseModel):
    """A wallet's entries in [opening_at, closing_at) with its balance at both ends; the opening
    balance plus the entries' signed amounts is the closing balance. `entries` is one page."""

    project_id: str
    wallet_id: str
    asset_id: str
    opening_at: datetime
    closing_at: datetime
    opening_balance: str
    closing_balance: str
    entries: Page[WalletEntryView]


class SigningKeyView(BaseModel):
    """A request signing key of a project (never its secret)."""

    key_id: str
    project_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedSigningKeyView(BaseModel):
    """A signing key just made: `token` (cws_<key ID>_<secret>) is shown only this once."""

    key_id: str
    project_id: str
    label: str | None
    created_at: datetime
    token: str


class RevokedSigningKeyView(BaseModel):
    key_id: str
    revoked_at: datetime


class Pending(BaseModel):
    """A write whose result did not arrive within the wait: poll `location`."""

    reference_id: str
    project_id: str | None
    type: str
    status: Literal["Pending"] = "Pending"
    location: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


__all__ = [
    "AssetCreateBody",
    "CustomerCreateBody",
    "CreatedSigningKeyView",
    "CustomerUpdateBody",
    "DescriptionBody",
    "Health",
    "NameBody",
    "Page",
    "Pending",
    "ProjectCreateBody",
    "ProjectId",
    "ReferenceBody",
    "RevokedSigningKeyView",
    "SigningKeyCreateBody",
    "SigningKeyView",
    "SystemWalletOpenBody",
    "TransactionBody",
    "VoidBody",
    "WalletEntryView",
    "WalletOpenBody",
    "WalletRenameBody",
    "WalletStatusBody",
]
