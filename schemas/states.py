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
