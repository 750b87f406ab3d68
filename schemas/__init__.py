"""The public wire contract of the Cloud Wallet ledger (pydantic v2; no other repo deps).

Modules: ``limits`` (every bound), ``errors`` (error codes), ``states`` (status enums),
``amounts`` (exact money), ``requests`` (request models, ``partition_key``), ``results``
(result models), ``jsonschema`` / ``docs`` (generated artefacts).
"""

from schemas.errors import ERROR_DESCRIPTIONS, ErrorCode
from schemas.requests import REQUEST_TYPES, Request, RequestAdapter, RequestModel, partition_key
from schemas.results import ErrorInfo, Result
from schemas.states import CustomerStatus, EntryType, Status, WalletStatus

__all__ = [
    "ERROR_DESCRIPTIONS",
    "REQUEST_TYPES",
    "CustomerStatus",
    "EntryType",
    "ErrorCode",
    "ErrorInfo",
    "Request",
    "RequestAdapter",
    "RequestModel",
    "Result",
    "Status",
    "WalletStatus",
    "partition_key",
]
