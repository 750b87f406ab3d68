"""A request the ledger's rules turn down: the error code, the message, and the operation at fault."""

from typing import NoReturn

from schemas.errors import ErrorCode


class Rejected(Exception):
    """A business-rule failure of one request (or one operation of a transaction)."""

    def __init__(self, code: ErrorCode, message: str, operation_index: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.operation_index = operation_index


def reject(code: ErrorCode, message: str, operation_index: int | None = None) -> NoReturn:
    raise Rejected(code, message, operation_index)
