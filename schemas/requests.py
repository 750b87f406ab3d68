"""Request models: one per write request type, a discriminated union on ``type``.

Every request carries ``type``, ``reference_id`` (the client's idempotency key, unique
per project across all request types) and ``project_id`` (optional only for
``project.create``, where an omitted ID is derived from the reference ID).
"""

from typing import Annotated, Final, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from schemas.amounts import Amount
from schemas.limits import (
    RESERVED_REFERENCE_PREFIX,
    ASSET_CODE_PATTERN,
    DEFAULT_FRACTIONS,
    ID_PATTERN,
    MAX_ASSET_CODE_LEN,
    MAX_ASSET_ID_LEN,
    MAX_CUSTOMER_ID_LEN,
    MAX_DESCRIPTION_LEN,
    MAX_HOLD_ID_LEN,
    MAX_FRACTIONS,
    MAX_METADATA_KEY_LEN,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LEN,
    MAX_NAME_LEN,
    MAX_OPERATIONS_PER_TRANSACTION,
    MAX_PROJECT_ID_LEN,
    MAX_REFERENCE_ID_LEN,
    MAX_WALLET_ID_LEN,
    METADATA_KEY_PATTERN,
)
from schemas.amounts import scale_of
from schemas.ids import derive_entity_id
from schemas.states import WalletStatus


def _printable(value: str) -> str:
    if not value.isprintable() or value.isspace():
        raise ValueError("must be printable and not only whitespace")
    return value


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate is not text at all.
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
    return value


def _not_reserved(value: str) -> str:
    if value.startswith(RESERVED_REFERENCE_PREFIX):
        raise ValueError(f"must not start with {RESERVED_REFERENCE_PREFIX!r}: reserved for the ledger's own requests (hold.expire)")
    return value


def _power_of_ten(value: int) -> int:
    scale_of(value)  # raises ValueError with the contract's message
    return value


ProjectId = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_PROJECT_ID_LEN, pattern=ID_PATTERN)
]
AssetId = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_ASSET_ID_LEN, pattern=ID_PATTERN)
]
WalletId = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_WALLET_ID_LEN, pattern=ID_PATTERN)
]
CustomerId = Annotated[
    str,
    Strict(),
    Field(description="any printable string (e.g. an e-mail address), not only whitespace"),
    StringConstraints(min_length=1, max_length=MAX_CUSTOMER_ID_LEN),
    AfterValidator(_printable),
]
ReferenceId = Annotated[
    str,
    Strict(),
    Field(description="printable, not only whitespace, not starting with '~' (reserved); unique per project"),
    StringConstraints(min_length=1, max_length=MAX_REFERENCE_ID_LEN),
    AfterValidator(_printable),
    AfterValidator(_not_reserved),
]
HoldId = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_HOLD_ID_LEN, pattern=ID_PATTERN)
]
TransactionId = Annotated[
    str,
    Strict(),
    Field(description="a transaction ID as results give it (a UUID)"),
    StringConstraints(min_length=36, max_length=36, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=MAX_NAME_LEN), AfterValidator(_storable)]
Description = Annotated[str, Strict(), StringConstraints(max_length=MAX_DESCRIPTION_LEN), AfterValidator(_storable)]
AssetCode = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_ASSET_CODE_LEN, pattern=ASSET_CODE_PATTERN)
]
MetadataKey = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_LEN, pattern=METADATA_KEY_PATTERN)
]
MetadataValue = Annotated[str, Strict(), StringConstraints(max_length=MAX_METADATA_VALUE_LEN), AfterValidator(_storable)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=MAX_METADATA_KEYS,
        description=(
            f"string keys to string values, see *Metadata*: at most {MAX_METADATA_KEYS} keys of 1..{MAX_METADATA_KEY_LEN} characters "
            f"`[A-Za-z0-9_.:-]`, values of at most {MAX_METADATA_VALUE_LEN} characters without NUL"
        ),
    ),
]
Fractions = Annotated[
    int,
    Strict(),
    Field(ge=1, le=MAX_FRACTIONS, description="a power of ten: 1, 10, ..., 10**18; scale = log10(fractions)"),
    AfterValidator(_power_of_ten),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- transaction operations -------------------------------------------------------------


class Issue(_Model):
    """Create value in one wallet."""

    type: Literal["Issue"]
    wallet_id: WalletId
    amount: Amount


class Redeem(_Model):
    """Eliminate value from one wallet."""

    type: Literal["Redeem"]
    wallet_id: WalletId
    amount: Amount


class Transfer(_Model):
    """Move value between two different wallets of the same project and asset."""

    type: Literal["Transfer"]
    from_wallet_id: WalletId
    to_wallet_id: WalletId
    amount: Amount

    @model_validator(mode="after")
    def _distinct_wallets(self) -> "Transfer":
        if self.from_wallet_id == self.to_wallet_id:
            raise ValueError("a Transfer needs two different wallets (from_wallet_id == to_wallet_id)")
        return self


class Hold(_Model):
    """Reserve an amount of one wallet: its `available` drops, its `balance` does not. Toward
    `to_wallet_id` (captured as a Transfer) or none (captured as a Redeem); released at
    `expires_at` if not captured or voided before (docs/holds-and-reversals.md)."""

    type: Literal["Hold"]
    wallet_id: WalletId
    amount: Amount
    to_wallet_id: WalletId | None = None
    hold_id: Annotated[HoldId | None, Field(description="derived from the reference ID and the operation's index when omitted")] = None
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _distinct_wallets(self) -> "Hold":
        if self.to_wallet_id == self.wallet_id:
            raise ValueError("a hold's destination must be another wallet (to_wallet_id == wallet_id)")
        return self


class Capture(_Model):
    """Move all or part of an Active hold (a Transfer to its destination, else a Redeem) and
    release the rest."""

    type: Literal["Capture"]
    hold_id: HoldId
    amount: Annotated[Amount | None, Field(description="at most the held amount; omitted: all of it")] = None


class Void(_Model):
    """Release an Active hold: nothing moves."""

    type: Literal["Void"]
    hold_id: HoldId


Operation: TypeAlias = Annotated[Issue | Redeem | Transfer | Hold | Capture | Void, Field(discriminator="type")]
HOLD_OPERATIONS: Final = (Hold, Capture, Void)


# --- requests ---------------------------------------------------------------------------


class _Request(_Model):
    type: str  # narrowed to a Literal by every request model (the union's discriminator)
    reference_id: ReferenceId


class _ProjectScoped(_Request):
    project_id: ProjectId


class ProjectCreate(_Request):
    """Create a project; an omitted project_id is derived from the reference ID."""

    type: Literal["project.create"]
    project_id: ProjectId | None = None
    name: Name


class ProjectRename(_ProjectScoped):
    type: Literal["project.rename"]
    name: Name


class AssetCreate(_ProjectScoped):
    """Create an asset; an omitted asset_id is derived from the reference ID."""

    type: Literal["asset.create"]
    asset_id: AssetId | None = None
    code: AssetCode
    name: Name
    fractions: Fractions = DEFAULT_FRACTIONS


class AssetRename(_ProjectScoped):
    type: Literal["asset.rename"]
    asset_id: AssetId
    name: Name


class AssetDelete(_ProjectScoped):
    """Delete an asset that no wallet has ever used."""

    type: Literal["asset.delete"]
    asset_id: AssetId


class CustomerUpsert(_ProjectScoped):
    """Insert the customer (Active) or update the given fields; status is unchanged."""

    type: Literal["customer.upsert"]
    customer_id: CustomerId
    name: Name | None = None
    description: Description | None = None
    metadata: Annotated[Metadata | None, Field(description="replaces the customer's metadata whole; absent: unchanged")] = None


class CustomerSuspend(_ProjectScoped):
    """Suspend the customer and every Open wallet of theirs."""

    type: Literal["customer.suspend"]
    customer_id: CustomerId


class CustomerResume(_ProjectScoped):
    """Make the customer Active again; their wallets stay as they are."""

    type: Literal["customer.resume"]
    customer_id: CustomerId


class CustomerDelete(_ProjectScoped):
    """Delete a customer whose wallets are all Closed."""

    type: Literal["customer.delete"]
    customer_id: CustomerId


class WalletOpen(_ProjectScoped):
    """Open a wallet for a customer; an omitted wallet_id is derived from the reference ID."""

    type: Literal["wallet.open"]
    customer_id: CustomerId
    asset_id: AssetId
    wallet_id: WalletId | None = None
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


class SystemWalletOpen(_ProjectScoped):
    """Open a wallet owned by the project operator (no customer)."""

    type: Literal["system_wallet.open"]
    asset_id: AssetId
    wallet_id: WalletId | None = None
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


class WalletSetStatus(_ProjectScoped):
    type: Literal["wallet.set_status"]
    wallet_id: WalletId
    status: WalletStatus


class WalletRename(_ProjectScoped):
    type: Literal["wallet.rename"]
    wallet_id: WalletId
    name: Name
    metadata: Annotated[Metadata | None, Field(description="replaces the wallet's metadata whole; absent: unchanged")] = None


class WalletSetDescription(_ProjectScoped):
    type: Literal["wallet.set_description"]
    wallet_id: WalletId
    description: Description


class TransactionRun(_ProjectScoped):
    """Run operations in order, all or nothing."""

    type: Literal["transaction.run"]
    description: Description | None = None
    metadata: Metadata | None = None
    operations: Annotated[
        list[Operation], Field(min_length=1, max_length=MAX_OPERATIONS_PER_TRANSACTION)
    ]


class TransactionReverse(_ProjectScoped):
    """Apply the opposite of a Completed transaction's operations, in reverse order, as one new
    transaction linked both ways (`reverses` / `reversed_by`); at most once, never of a reversal."""

    type: Literal["transaction.reverse"]
    transaction_id: TransactionId
    description: Description | None = None
    metadata: Annotated[Metadata | None, Field(description="the reversal's own (the original's is not copied)")] = None


class HoldCreate(_ProjectScoped):
    """A transaction of one Hold operation; an omitted hold_id is derived as for a Hold
    operation at index 0 (`schemas.ids.derive_hold_id`)."""

    type: Literal["hold.create"]
    wallet_id: WalletId
    amount: Amount
    to_wallet_id: WalletId | None = None
    hold_id: HoldId | None = None
    expires_at: AwareDatetime | None = None
    description: Description | None = None
    metadata: Annotated[Metadata | None, Field(description="on the hold and on its transaction")] = None

    @model_validator(mode="after")
    def _distinct_wallets(self) -> "HoldCreate":
        if self.to_wallet_id == self.wallet_id:
            raise ValueError("a hold's destination must be another wallet (to_wallet_id == wallet_id)")
        return self

    def operation(self, *, hold_id: str | None) -> Hold:
        return Hold(type="Hold", wallet_id=self.wallet_id, amount=self.amount, to_wallet_id=self.to_wallet_id, hold_id=hold_id, expires_at=self.expires_at)


class HoldCapture(_ProjectScoped):
    """A transaction of one Capture operation."""

    type: Literal["hold.capture"]
    hold_id: HoldId
    amount: Amount | None = None
    description: Description | None = None


class HoldVoid(_ProjectScoped):
    """A transaction of one Void operation."""

    type: Literal["hold.void"]
    hold_id: HoldId
    description: Description | None = None


def _expiry_reference(hold_id: str) -> str:
    return f"{RESERVED_REFERENCE_PREFIX}expire/{hold_id}"


class HoldExpire(_ProjectScoped):
    """Release a hold past its `expires_at` (by the record's log time). The processor's sweep
    publishes it for holds on wallets that see no traffic. Its reference ID is the hold's own
    (`~expire/{hold_id}`) and it spends nothing: any number of them answer from the hold's state."""

    type: Literal["hold.expire"]
    reference_id: Annotated[str, Strict(), Field(description="exactly '~expire/' followed by the hold_id")]  # type: ignore[assignment]
    hold_id: HoldId

    @model_validator(mode="after")
    def _reference_is_the_holds(self) -> "HoldExpire":
        if self.reference_id != _expiry_reference(self.hold_id):
            raise ValueError(f"a hold.expire's reference_id is {_expiry_reference(self.hold_id)!r} (the hold's own)")
        return self

    @classmethod
    def of(cls, *, project_id: str, hold_id: str) -> "HoldExpire":
        return cls(type="hold.expire", reference_id=_expiry_reference(hold_id), project_id=project_id, hold_id=hold_id)


RequestModel: TypeAlias = (
    ProjectCreate
    | ProjectRename
    | AssetCreate
    | AssetRename
    | AssetDelete
    | CustomerUpsert
    | CustomerSuspend
    | CustomerResume
    | CustomerDelete
    | WalletOpen
    | SystemWalletOpen
    | WalletSetStatus
    | WalletRename
    | WalletSetDescription
    | TransactionRun
    | TransactionReverse
    | HoldCreate
    | HoldCapture
    | HoldVoid
    | HoldExpire
)
Request: TypeAlias = Annotated[RequestModel, Field(discriminator="type")]
RequestAdapter: Final[TypeAdapter[RequestModel]] = TypeAdapter(Request)

REQUEST_TYPES: Final[dict[str, type[BaseModel]]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in RequestModel.__args__  # type: ignore[attr-defined]
}


# --- validity of single values (for answering what failed validation) ---------------------
_PROJECT_ID: Final[TypeAdapter[str]] = TypeAdapter(ProjectId)
_REFERENCE_ID: Final[TypeAdapter[str]] = TypeAdapter(ReferenceId)


def is_project_id(value: object) -> bool:
    """Whether `value` is a valid project ID (what `project_id` accepts)."""
    return _is_valid(_PROJECT_ID, value)


def is_reference_id(value: object) -> bool:
    """Whether `value` is a valid reference ID: only such a reference can ever be spent."""
    return _is_valid(_REFERENCE_ID, value)


def _is_valid(adapter: TypeAdapter[str], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return False
    return True


# --- partition keying -------------------------------------------------------------------


def transaction_key_wallet(request: TransactionRun) -> str:
    """The first wallet the transaction debits or holds, else the first wallet it credits, else
    (only captures and voids) the first hold it names."""
    for operation in request.operations:
        if isinstance(operation, Transfer):
            return operation.from_wallet_id
        if isinstance(operation, Redeem | Hold):
            return operation.wallet_id
    for operation in request.operations:
        if isinstance(operation, Issue):
            return operation.wallet_id
    first = request.operations[0]
    assert isinstance(first, Capture | Void), "a transaction that moves nothing only captures or voids"
    return first.hold_id


def partition_key(request: RequestModel) -> str:
    """The Kafka message key for a request: ``"{project_id}/{x}"``.

    x is the wallet for wallet requests (a transaction: the first wallet it debits, else
    the first it credits; a wallet open: the wallet_id if given, else the reference_id),
    the customer_id for customer requests, the asset_id (else reference_id) for asset
    requests and the project_id for project requests. A project.create without a
    project_id has no project yet and is keyed by its reference_id alone.
    """
    match request:
        case TransactionRun():
            return f"{request.project_id}/{transaction_key_wallet(request)}"
        case TransactionReverse():
            # Its wallets are the original's, which the request does not name: the row locks,
            # not the partition, keep batches from interleaving on them (docs/holds-and-reversals.md).
            return f"{request.project_id}/{request.transaction_id}"
        case WalletSetStatus() | WalletRename() | WalletSetDescription() | HoldCreate():
            return f"{request.project_id}/{request.wallet_id}"
        case HoldCapture() | HoldVoid() | HoldExpire():
            # Like a reversal's: the hold names its wallets, the request does not.
            return f"{request.project_id}/{request.hold_id}"
        case WalletOpen() | SystemWalletOpen():
            return f"{request.project_id}/{request.wallet_id or request.reference_id}"
        case CustomerUpsert() | CustomerSuspend() | CustomerResume() | CustomerDelete():
            return f"{request.project_id}/{request.customer_id}"
        case AssetCreate():
            return f"{request.project_id}/{request.asset_id or request.reference_id}"
        case AssetRename() | AssetDelete():
            return f"{request.project_id}/{request.asset_id}"
        case ProjectCreate():
            if request.project_id is None:
                return request.reference_id
            return f"{request.project_id}/{request.project_id}"
        case ProjectRename():
            return f"{request.project_id}/{request.project_id}"
    raise TypeError(f"not a request: {type(request).__name__}")


def request_project_id(request: RequestModel) -> str:
    """The project a request belongs to (derived for a project.create without an ID)."""
    if isinstance(request, ProjectCreate) and request.project_id is None:
        return derive_entity_id(kind="project", project_id="", reference_id=request.reference_id)
    project_id = request.project_id
    assert project_id is not None
    return project_id
