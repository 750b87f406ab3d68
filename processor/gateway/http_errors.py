"""Error bodies and status codes.

Every error the gateway answers has the same shape, `{"error": {"code", "message",
"operation_index", "fields"}}`; a processor result (`Result`) has `error` at the same place, so
a client reads `body["error"]["code"]` whatever answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.errors import ErrorCode

log = logging.getLogger("gateway")

# A Failed result's error code -> HTTP status. Documented in docs/gateway.md.
STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.ValidationError: 422,
    ErrorCode.AssetMismatch: 422,
    ErrorCode.ProjectNotFound: 404,
    ErrorCode.AssetNotFound: 404,
    ErrorCode.CustomerNotFound: 404,
    ErrorCode.WalletNotFound: 404,
    ErrorCode.TransactionNotFound: 404,
    ErrorCode.HoldNotFound: 404,
    ErrorCode.DuplicateReferenceId: 409,
    ErrorCode.ProjectAlreadyExists: 409,
    ErrorCode.AssetAlreadyExists: 409,
    ErrorCode.WalletAlreadyExists: 409,
    ErrorCode.AssetInUse: 409,
    ErrorCode.CustomerSuspended: 409,
    ErrorCode.CustomerHasOpenWallets: 409,
    ErrorCode.WalletNotOpen: 409,
    ErrorCode.WalletNotEmpty: 409,
    ErrorCode.WalletClosed: 409,
    ErrorCode.InsufficientFunds: 409,
    ErrorCode.BalanceLimitExceeded: 409,
    ErrorCode.TransactionNotReversible: 409,
    ErrorCode.TransactionAlreadyReversed: 409,
    ErrorCode.HoldAlreadyExists: 409,
    ErrorCode.HoldNotActive: 409,
    ErrorCode.HoldExpired: 409,
    ErrorCode.HoldNotExpired: 409,
    ErrorCode.HoldAmountExceeded: 409,
    ErrorCode.WalletHasActiveHolds: 409,
    ErrorCode.InternalError: 500,
    # The processor refused the gateway's own signature (its signing key revoked or wrong): the
    # caller did nothing wrong, the deployment must be fixed.
    ErrorCode.Unauthorized: 500,
}
assert set(STATUS_BY_CODE) == set(ErrorCode), "every error code has an HTTP status"


class GatewayCode(StrEnum):
    """Every code of an error the gateway answers itself (an `ErrorBody`).

    A `GatewayError` takes nothing else, so this is the whole list; docs/gateway.md lists each
    one (tests/unit/test_gateway_http.py fails when it does not). A processor's Failed result
    carries a schemas.errors.ErrorCode instead (STATUS_BY_CODE above).
    """

    Unauthorized = "Unauthorized"  # 401: no key, or not an active one
    Forbidden = "Forbidden"  # 403: the key does not reach this
    NotFound = "NotFound"  # 404: no such route
    MethodNotAllowed = "MethodNotAllowed"  # 405
    PayloadTooLarge = "PayloadTooLarge"  # 413: a body over max_body_bytes
    UnsupportedMediaType = "UnsupportedMediaType"  # 415: a body that is not application/json
    ValidationError = ErrorCode.ValidationError.value  # 422: bad input, bodies that are not JSON included
    ProjectNotFound = ErrorCode.ProjectNotFound.value  # 404 on reads
    AssetNotFound = ErrorCode.AssetNotFound.value
    CustomerNotFound = ErrorCode.CustomerNotFound.value
    WalletNotFound = ErrorCode.WalletNotFound.value
    TransactionNotFound = ErrorCode.TransactionNotFound.value
    HoldNotFound = ErrorCode.HoldNotFound.value
    RequestNotFound = "RequestNotFound"
    SigningKeyNotFound = "SigningKeyNotFound"  # 404: no active signing key of the project with that ID
    ServiceUnavailable = "ServiceUnavailable"  # 503 with Retry-After: PostgreSQL or Kafka unreachable; without: no master signing secret
    InternalError = ErrorCode.InternalError.value  # 500: a bug, never bad input


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str  # e.g. "body.operations.0.amount", "path.walletId", "query.page_size", "header.Idempotency-Key"
    reason: str


class HttpError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str  # a GatewayCode (a processor's Result carries an ErrorCode at the same place)
    message: str
    operation_index: int | None = None
    fields: list[FieldError] = []


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: HttpError


class GatewayError(Exception):
    def __init__(
        self,
        status_code: int,
        code: GatewayCode,
        message: str,
        *,
        fields: Sequence[FieldError] = (),
        operation_index: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        # GatewayCode(...) refuses a code outside the documented list, even one passed as a string.
        self.code = GatewayCode(code)
        self.body = ErrorBody(
            error=HttpError(code=self.code.value, message=message, operation_index=operation_index, fields=list(fields))
        )
        self.headers = dict(headers or {})


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, GatewayCode.Unauthorized, message, headers={"WWW-Authenticate": 'ApiKey header="X-Api-Key"'})


def forbidden() -> GatewayError:
    # One message for every refusal: it never tells whether the thing asked for exists.
    return GatewayError(403, GatewayCode.Forbidden, "this API key does not give access to this resource")


def not_found(code: GatewayCode, message: str) -> GatewayError:
    return GatewayError(404, code, message)


def invalid(field: str, reason: str) -> GatewayError:
    return GatewayError(422, GatewayCode.ValidationError, f"{field}: {reason}", fields=[FieldError(field=field, reason=reason)])


def too_large_message(limit: int) -> str:
    return f"request bodies are limited to {limit} bytes"


def payload_too_large(*, limit: int) -> GatewayError:
    return GatewayError(413, GatewayCode.PayloadTooLarge, too_large_message(limit))


def unreadable_body(cause: BaseException | None) -> GatewayError:
    """A body FastAPI could not turn into JSON for a reason other than a syntax error (those come
    as RequestValidationError `json_invalid`): the same 422 ValidationError on field `body`."""
    if isinstance(cause, UnicodeError):
        reason = "the body is not valid JSON (not UTF-8 text)"
    elif isinstance(cause, RecursionError):
        reason = "the body is nested too deeply to be read as JSON"
    else:  # e.g. an integer of more digits than Python converts (ValueError)
        reason = "the body holds a value that cannot be read as JSON"
    return invalid("body", reason)


_UNION_TAGS = frozenset({"Issue", "Redeem", "Transfer"})


def _loc_text(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def field_errors(errors: Iterable[Mapping[str, Any]], *, rename: Mapping[str, str] | None = None, prefix: str = "") -> list[FieldError]:
    """pydantic errors -> FieldErrors. `rename` maps a request field to where the client sent it."""
    found = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("function-after", "function-plain")]
        # A discriminated union puts the tag into the location (operations.0.Issue.amount): drop it.
        loc = [part for i, part in enumerate(loc) if not (i > 0 and isinstance(loc[i - 1], int) and part in _UNION_TAGS)]
        target = rename.get(str(loc[0])) if rename is not None and loc else None
        if target:
            field = target + ("." + _loc_text(loc[1:]) if loc[1:] else "")
        else:
            field = prefix + _loc_text(loc) if loc else "body"
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error")
            reason = f"the body is not valid JSON ({detail})" if detail else "the body is not valid JSON"
            field = "body"
        item = FieldError(field=field or "body", reason=reason)
        if item not in found:  # a path parameter the access check declares too is reported once
            found.append(item)
    return found


def validation_error(fields: list[FieldError]) -> GatewayError:
    operation_index = None
    for item in fields:
        parts = item.field.split(".")
        if len(parts) >= 3 and parts[0] == "body" and parts[1] == "operations" and parts[2].isdigit():
            operation_index = int(parts[2])
            break
    summary = "; ".join(f"{f.field}: {f.reason}" for f in fields[:5])
    if len(fields) > 5:
        summary += f"; and {len(fields) - 5} more"
    return GatewayError(422, GatewayCode.ValidationError, summary or "invalid request", fields=fields, operation_index=operation_index)


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body.model_dump(mode="json"), status_code=error.status_code, headers=error.headers or None)


# Errors the framework raises as HTTPException (routing; the body limit, see body_limit.py).
_FRAMEWORK_ERRORS: dict[int, tuple[GatewayCode, str | None]] = {
    404: (GatewayCode.NotFound, "no such endpoint"),
    405: (GatewayCode.MethodNotAllowed, "method not allowed on this endpoint"),
    413: (GatewayCode.PayloadTooLarge, None),  # None: the exception's own detail
}


def framework_error(error: StarletteHTTPException) -> GatewayError:
    """A framework HTTPException as the gateway's error, always with a GatewayCode."""
    if error.status_code == 400:
        # FastAPI's body reader: a body json.loads refused with something other than a syntax
        # error (invalid UTF-8, nesting deeper than the recursion limit, a 5000-digit number).
        return unreadable_body(error.__cause__)
    known = _FRAMEWORK_ERRORS.get(error.status_code)
    if known is None:
        # Not one the gateway knows it can meet: a bug to fix, answered with a documented code.
        log.error("unexpected HTTP error %s: %s", error.status_code, error.detail)
        return GatewayError(500, GatewayCode.InternalError, "an unexpected error")
    code, message = known
    return GatewayError(error.status_code, code, message or str(error.detail), headers=getattr(error, "headers", None))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, error: GatewayError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        body_sent = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        if body_sent and "json" not in content_type.lower() and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            return error_response(
                GatewayError(
                    415,
                    GatewayCode.UnsupportedMediaType,
                    f"request bodies must be JSON (Content-Type: application/json), not {content_type!r}",
                )
            )
        return error_response(validation_error(field_errors(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(framework_error(error))

    @app.exception_handler(sa.exc.DBAPIError)
    async def _database_error(request: Request, error: sa.exc.DBAPIError) -> JSONResponse:
        if isinstance(error, sa.exc.DataError):
            # A value PostgreSQL cannot take (the checks before should have caught it).
            return error_response(GatewayError(422, GatewayCode.ValidationError, "a parameter has a value the database refuses"))
        if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            log.warning("database unavailable: %s", error)
            return error_response(
                GatewayError(503, GatewayCode.ServiceUnavailable, "the database is unavailable; try again", headers={"Retry-After": "1"})
            )
        log.exception("database error on %s %s", request.method, request.url.path)
        return error_response(GatewayError(500, GatewayCode.InternalError, "an unexpected database error"))

    @app.exception_handler(sa.exc.TimeoutError)
    async def _pool_timeout(request: Request, error: sa.exc.TimeoutError) -> JSONResponse:
        return error_response(
            GatewayError(503, GatewayCode.ServiceUnavailable, "the database is busy; try again", headers={"Retry-After": "1"})
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(GatewayError(500, GatewayCode.InternalError, "an unexpected error"))
