"""State -> contract views, built without validation: the engine's state is valid by
construction, so re-validating it on the hot path would only cost time."""

from datetime import datetime
from typing import Any, TypeVar

from processor.ledger.state import Asset, Customer, Hold, Project, Wallet
from schemas.amounts import format_minor_units
from schemas.errors import ErrorCode
from schemas.results import (
    AssetView,
    CustomerView,
    EntryView,
    ErrorInfo,
    HoldView,
    ProjectView,
    Result,
    Status,
    TransactionView,
    WalletView,
)

M = TypeVar("M")

_FIELD_COUNT: dict[type, int] = {
    model: len(model.model_fields)
    for model in (AssetView, CustomerView, EntryView, ErrorInfo, HoldView, ProjectView, Result, TransactionView, WalletView)
}
_new = object.__new__
_set = object.__setattr__


def build(model: type[M], **values: Any) -> M:
    """What ``model.model_construct`` does, minus its per-field default handling (several
    times cheaper): every field must be given, already valid. The unit tests check
    engine results against their validated JSON round trip."""
    assert _FIELD_COUNT[model] == len(values), f"{model.__name__}: every field must be given"
    obj = _new(model)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def project_view(project: Project, *, assets: list[Asset] | None) -> ProjectView:
    return build(
        ProjectView,
        project_id=project.project_id,
        name=project.name,
        created_at=project.created_at,
        assets=None if assets is None else [asset_view(a) for a in assets],
    )


def asset_view(asset: Asset) -> AssetView:
    return build(
        AssetView,
        project_id=asset.project_id,
        asset_id=asset.asset_id,
        code=asset.code,
        name=asset.name,
        fractions=asset.fractions,
        in_use=asset.in_use,
    )


def customer_view(customer: Customer) -> CustomerView:
    return build(
        CustomerView,
        project_id=customer.project_id,
        customer_id=customer.customer_id,
        name=customer.name,
        description=customer.description,
        status=customer.status,
        metadata=customer.metadata,
    )


def wallet_view(wallet: Wallet, *, fractions: int) -> WalletView:
    return build(
        WalletView,
        project_id=wallet.project_id,
        wallet_id=wallet.wallet_id,
        asset_id=wallet.asset_id,
        customer_id=wallet.customer_id,
        name=wallet.name,
        description=wallet.description,
        status=wallet.status,
        balance=format_minor_units(wallet.balance, fractions=fractions),
        created_at=wallet.created_at,
        held=format_minor_units(wallet.held, fractions=fractions),
        available=format_minor_units(wallet.balance - wallet.held, fractions=fractions),
        metadata=wallet.metadata,
    )


def hold_view(hold: Hold, *, fractions: int) -> HoldView:
    return build(
        HoldView,
        project_id=hold.project_id,
        hold_id=hold.hold_id,
        wallet_id=hold.wallet_id,
        to_wallet_id=hold.to_wallet_id,
        amount=format_minor_units(hold.amount, fractions=fractions),
        captured=None if hold.captured is None else format_minor_units(hold.captured, fractions=fractions),
        status=hold.status,
        expires_at=hold.expires_at,
        created_by=hold.created_by,
        finished_by=hold.finished_by,
        created_at=hold.created_at,
        finished_at=hold.finished_at,
        metadata=hold.metadata,
    )


def error_info(code: ErrorCode, message: str, operation_index: int | None = None) -> ErrorInfo:
    return build(ErrorInfo, code=code, message=message, operation_index=operation_index)


def failed_result(
    *,
    reference_id: str,
    project_id: str | None,
    request_type: str,
    error: ErrorInfo,
    processed_at: datetime,
    original: Result | None = None,
    transaction: TransactionView | None = None,
) -> Result:
    return build(
        Result,
        reference_id=reference_id,
        project_id=project_id,
        type=request_type,
        status=Status.Failed,
        error=error,
        processed_at=processed_at,
        project=None,
        asset=None,
        customer=None,
        wallet=None,
        wallets=None,
        transaction=transaction,
        hold=None,
        original=original,
    )
