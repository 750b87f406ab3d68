"""Record bytes -> a request, a ValidationError result, or a reason for the DLQ.

Three outcomes, on purpose:
* a valid request goes to the ledger;
* a JSON object with a `reference_id` that fails validation is answered: Failed, ValidationError;
* anything else (not UTF-8 JSON, not an object, no reference ID to answer to, too large) cannot
  be answered, so it goes to the DLQ with the reason and its original bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from schemas.errors import ErrorCode
from schemas.requests import RequestAdapter, RequestModel
from schemas.results import ErrorInfo, Result
from schemas.states import Status


@dataclass(slots=True, frozen=True, kw_only=True)
class SourceRecord:
    """One Kafka record as the processor needs it (independent of the client library)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True, frozen=True, kw_only=True)
class Decoded:
    record: SourceRecord
    request: RequestModel | None = None
    rejection: Result | None = None  # ValidationError, answered but never applied
    dlq_reason: str | None = None


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in item["loc"]) or "request"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def decode(record: SourceRecord, *, max_bytes: int, now: datetime) -> Decoded:
    value = record.value
    if value is None or not value:
        return Decoded(record=record, dlq_reason="empty record value: expected a JSON request object")
    if len(value) > max_bytes:
        return Decoded(record=record, dlq_reason=f"record value is {len(value)} bytes, over the {max_bytes}-byte limit")
    try:
        # The common case in one pass of pydantic-core's JSON parser. It is never more lenient
        # than json.loads + validate_python below, which finds out what is wrong otherwise.
        return Decoded(record=record, request=RequestAdapter.validate_json(value))
    except ValidationError:
        pass
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return Decoded(record=record, dlq_reason=f"not UTF-8 JSON: {error}")
    if not isinstance(raw, dict):
        return Decoded(record=record, dlq_reason=f"expected a JSON object, got {type(raw).__name__}")
    reference_id = raw.get("reference_id")
    if not isinstance(reference_id, str) or not reference_id:
        return Decoded(record=record, dlq_reason="no string reference_id: the request cannot be answered")
    try:
        request = RequestAdapter.validate_python(raw)
    except ValidationError as error:
        project_id = raw.get("project_id")
        rejection = Result.model_construct(
            reference_id=reference_id,
            project_id=project_id if isinstance(project_id, str) else None,
            type=str(raw.get("type", "")),
            status=Status.Failed,
            error=ErrorInfo(code=ErrorCode.ValidationError, message=describe_validation_error(error)),
            processed_at=now,
        )
        return Decoded(record=record, rejection=rejection)
    return Decoded(record=record, request=request)
