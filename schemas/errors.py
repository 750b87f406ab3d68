"""Error codes: every code that can appear in a ``Result.error``, named once."""

from enum import StrEnum
from typing import Final


class ErrorCode(StrEnum):
    ValidationError = "ValidationError"
    DuplicateReferenceId = "DuplicateReferenceId"
    ProjectNotFound = "ProjectNotFound"
    ProjectAlreadyExists = "ProjectAlreadyExists"
    AssetNotFound = "AssetNotFound"
    AssetAlreadyExists = "AssetAlreadyExists"
    AssetInUse = "AssetInUse"
    CustomerNotFound = "CustomerNotFound"
    CustomerSuspended = "CustomerSuspended"
    CustomerHasOpenWallets = "CustomerHasOpenWallets"
    WalletNotFound = "WalletNotFound"
    WalletAlreadyExists = "WalletAlreadyExists"
    WalletNotOpen = "WalletNotOpen"
    WalletNotEmpty = "WalletNotEmpty"
    WalletClosed = "WalletClosed"
    AssetMismatch = "AssetMismatch"
    InsufficientFunds = "InsufficientFunds"
    BalanceLimitExceeded = "BalanceLimitExceeded"
    InternalError = "InternalError"
    Unauthorized = "Unauthorized"
    TransactionNotFound = "TransactionNotFound"
    TransactionNotReversible = "TransactionNotReversible"
    TransactionAlreadyReversed = "TransactionAlreadyReversed"
    HoldNotFound = "HoldNotFound"
    HoldAlreadyExists = "HoldAlreadyExists"
    HoldNotActive = "HoldNotActive"
    HoldExpired = "HoldExpired"
    HoldNotExpired = "HoldNotExpired"
    HoldAmountExceeded = "HoldAmountExceeded"
    WalletHasActiveHolds = "WalletHasActiveHolds"


ERROR_DESCRIPTIONS: Final[dict[ErrorCode, str]] = {
    ErrorCode.ValidationError: (
        "The request decoded but breaks the contract (field missing or too long, bad pattern, "
        "float amount, more decimals than the asset allows, ...)."
    ),
    ErrorCode.DuplicateReferenceId: (
        "This reference ID was already spent in this project; nothing changed and "
        "`original` carries the stored result of the first request."
    ),
    ErrorCode.ProjectNotFound: "No project with this ID. The reference ID is not spent.",
    ErrorCode.ProjectAlreadyExists: "project.create with an ID that already exists.",
    ErrorCode.AssetNotFound: "No asset with this ID in the project.",
    ErrorCode.AssetAlreadyExists: "asset.create with an asset ID that already exists in the project.",
    ErrorCode.AssetInUse: "asset.delete of an asset that a wallet uses (or ever used).",
    ErrorCode.CustomerNotFound: "No customer with this ID in the project.",
    ErrorCode.CustomerSuspended: (
        "The customer is suspended: no new wallet may be opened for them and their "
        "wallets cannot be set back to Open."
    ),
    ErrorCode.CustomerHasOpenWallets: "customer.delete while one of their wallets is not Closed.",
    ErrorCode.WalletNotFound: "No wallet with this ID in the project.",
    ErrorCode.WalletAlreadyExists: "A wallet open with a wallet ID that already exists in the project.",
    ErrorCode.WalletNotOpen: "A transaction operation touches a Suspended wallet.",
    ErrorCode.WalletNotEmpty: "Closing a wallet whose balance is not zero.",
    ErrorCode.WalletClosed: "The wallet is Closed (final): no status change, no operation.",
    ErrorCode.AssetMismatch: "A Transfer between wallets of different assets.",
    ErrorCode.InsufficientFunds: "A Redeem, Transfer or Hold needs more than the wallet's available amount (balance minus held).",
    ErrorCode.BalanceLimitExceeded: "An Issue or Transfer would take a balance above the maximum.",
    ErrorCode.InternalError: (
        "An unexpected fault while applying this request; it changed nothing and the "
        "next request went on."
    ),
    ErrorCode.Unauthorized: (
        "The request's signature does not hold: unsigned where signatures are required, an "
        "unknown or revoked signing key, bytes that do not match, or a key of another project. "
        "Nothing changed and the reference ID is not spent (docs/security.md)."
    ),
    ErrorCode.TransactionNotFound: "transaction.reverse of a transaction ID that is not in the project.",
    ErrorCode.TransactionNotReversible: (
        "transaction.reverse of a Failed transaction (nothing was applied) or of a reversal "
        "(run a new transaction to redo what it undid)."
    ),
    ErrorCode.TransactionAlreadyReversed: "transaction.reverse of a transaction a Completed reversal already reversed; the message names it.",
    ErrorCode.HoldNotFound: "A Capture, Void or hold.expire names a hold that is not in the project.",
    ErrorCode.HoldAlreadyExists: "A Hold with a hold_id that already exists in the project.",
    ErrorCode.HoldNotActive: "A Capture or Void of a hold that was already captured or voided; the message names its status.",
    ErrorCode.HoldExpired: "A Capture or Void of a hold past its expires_at (by the record's log time): it was released instead.",
    ErrorCode.HoldNotExpired: "hold.expire of an Active hold whose expires_at is not reached yet (by the record's log time).",
    ErrorCode.HoldAmountExceeded: "A Capture of more than the hold holds; the hold stays Active.",
    ErrorCode.WalletHasActiveHolds: "Closing a wallet with an Active hold: capture or void it first.",
}

assert set(ERROR_DESCRIPTIONS) == set(ErrorCode), "every ErrorCode has a description"
