"""The small enumerations of the contract: statuses and entry types."""

from enum import StrEnum


class Status(StrEnum):
    """Final status of a processed request."""

    Completed = "Completed"
    Failed = "Failed"


class WalletStatus(StrEnum):
    Open = "Open"
    Suspended = "Suspended"
    Closed = "Closed"


class CustomerStatus(StrEnum):
    Active = "Active"
    Suspended = "Suspended"


class EntryType(StrEnum):
    """The entry an operation posts to each wallet it touches."""

    Issue = "Issue"
    Redeem = "Redeem"
    Debit = "Debit"
    Credit = "Credit"
    Hold = "Hold"  # a hold reserves `amount`: available drops, balance does not
    Release = "Release"  # a hold ends (captured, voided or expired): available rises by `amount`


class HoldStatus(StrEnum):
    """Active until captured, voided or expired; each of those is final."""

    Active = "Active"
    Captured = "Captured"
    Voided = "Voided"
    Expired = "Expired"
