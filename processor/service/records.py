"""Record bytes -> a request, a ValidationError result, or a reason for the DLQ. Never raises.

Three outcomes, on purpose:
* a valid request goes to the ledger;
* a JSON object with an answerable `reference_id` that fails validation is answered: Failed,
  ValidationError (an empty reference ID included);
* anything else (not UTF-8 JSON, not an object, no reference ID to answer to, too large, too
  deep) cannot be answered, so it goes to the DLQ with the reason and its original bytes.

Every byte is hostile: the parser is bounded (size, nesting depth, integer digits, see
schemas/limits.py), whatever comes back from it is checked before it is used in an answer
(a key, a type, a message), and an error nobody foresaw still ends as a dead letter for this
one record, never as an exception that would take its batch down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.errors import ErrorCode
from schemas.limits import MAX_ANSWERABLE_REFERENCE_ID_LEN, MAX_ECHOED_TYPE_LEN, MAX_INTEGER_LITERAL_DIGITS, MAX_JSON_DEPTH
from schemas.requests import RequestAdapter, RequestModel, is_project_id
from schemas.results import ErrorInfo, Result
from schemas.states import Status

log = logging.getLogger(__name__)

MAX_MESSAGE_PART = 120  # characters of one location or message taken from the input


@dataclass(slots=True, frozen=True, kw_only=True)
class SourceRecord:
    """One Kafka record as the processor needs it: raw bytes, nothing decoded yet."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    # The broker's append time (the requests topic is LogAppendTime): decides hold expiry, the
    # same on every replay. None when the record carries a producer's CreateTime: forgeable.
    log_time: datetime | None = None

    def header_bytes(self, name: str) -> bytes | None:
        """The first header called `name`, as sent (None when absent or null)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(slots=True, frozen=True, kw_only=True)
class Decoded:
    record: SourceRecord
    request: RequestModel | None = None
    rejection: Result | None = None  # ValidationError, answered but never applied
    dlq_reason: str | None = None


def safe_text(value: object, *, limit: int = MAX_MESSAGE_PART) -> str:
    """Input-derived text made safe to publish: valid UTF-8 (lone surrogates escaped), no NUL,
    at most `limit` characters (longer is cut and marked)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        location = ".".join(safe_text(part, limit=40) for part in item["loc"]) or "request"
        parts.append(f"{location}: {safe_text(item['msg'])}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def decode(record: SourceRecord, *, max_bytes: int, now: datetime) -> Decoded:
    """The record's outcome; an unforeseen error while decoding dead-letters this record alone."""
    try:
        return _decode(record, max_bytes=max_bytes, now=now)
    except Exception as error:  # noqa: BLE001 - the last line of per-record isolation
        log.error("decoding the record at %s failed (%s); dead-lettering it", record.where, type(error).__name__)
        return Decoded(record=record, dlq_reason=f"the record could not be decoded ({type(error).__name__})")


def _decode(record: SourceRecord, *, max_bytes: int, now: datetime) -> Decoded:
    value = record.value
    if value is None or not value:
        return Decoded(record=record, dlq_reason="empty record value: expected a JSON request object")
    if len(value) > max_bytes:
        return Decoded(record=record, dlq_reason=f"record value is {len(value)} bytes, over the {max_bytes}-byte limit")
    try:
        # The common case in one pass of pydantic-core's JSON parser (bounded depth, exact
        # integers). It is never more lenient than parse + validate_python below, which finds
        # out what is wrong otherwise.
        return Decoded(record=record, request=RequestAdapter.validate_json(value))
    except ValidationError:
        pass
    raw, problem = parse_bounded(value)
    if problem is not None:
        return Decoded(record=record, dlq_reason=problem)
    if not isinstance(raw, dict):
        return Decoded(record=record, dlq_reason=f"expected a JSON object, got {type(raw).__name__}")
    reference_id = raw.get("reference_id")
    unanswerable = _unanswerable_reference(reference_id)
    if unanswerable is not None:
        return Decoded(record=record, dlq_reason=f"{unanswerable}: the request cannot be answered")
    too_deep = _deeper_than(raw, MAX_JSON_DEPTH)
    if too_deep:
        message = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    else:
        try:
            return Decoded(record=record, request=RequestAdapter.validate_python(raw))
        except ValidationError as error:
            message = describe_validation_error(error)
    return Decoded(record=record, rejection=_rejection(raw, reference_id=reference_id, message=message, now=now))


def parse_bounded(value: bytes) -> tuple[Any, str | None]:
    """json.loads with the contract's bounds: (parsed, None) or (None, why it cannot be read)."""
    try:
        # Decoded as UTF-8 first: given bytes, json.loads would also accept UTF-16 and UTF-32,
        # and the contract (and the fast path) is UTF-8 only; a BOM is refused too.
        return json.loads(value.decode("utf-8"), parse_int=_bounded_int), None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"not UTF-8 JSON: {safe_text(str(error))}"
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as error:  # e.g. a float literal out of range
        return None, f"not UTF-8 JSON: {safe_text(str(error))}"


class HugeInteger:
    """An integer literal longer than the contract allows, kept unconverted (converting 4,300+
    digits raises, and costs time before that). No field type accepts it: not an int, and not
    a str either, which a string field would take (IDs are never coerced from numbers)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


def _bounded_int(literal: str) -> int | HugeInteger:
    return int(literal) if len(literal) <= MAX_INTEGER_LITERAL_DIGITS else HugeInteger(len(literal))


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels; stops at the first path that does."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _unanswerable_reference(reference_id: object) -> str | None:
    if not isinstance(reference_id, str):
        return "no string reference_id"
    if len(reference_id) > MAX_ANSWERABLE_REFERENCE_ID_LEN:
        return f"reference_id longer than {MAX_ANSWERABLE_REFERENCE_ID_LEN} characters"
    try:
        reference_id.encode("utf-8")
    except UnicodeEncodeError:
        return "reference_id is not valid Unicode text (a lone surrogate)"
    return None


def _answerable_project_id(value: object) -> str | None:
    return value if is_project_id(value) else None  # type: ignore[return-value]


def _echoed_type(value: object) -> str:
    if isinstance(value, str) and len(value) <= MAX_ECHOED_TYPE_LEN and value.isprintable():
        return safe_text(value, limit=MAX_ECHOED_TYPE_LEN)
    return ""


def _rejection(raw: dict[str, Any], *, reference_id: str, message: str, now: datetime) -> Result:
    return Result.model_construct(
        reference_id=reference_id,
        project_id=_answerable_project_id(raw.get("project_id")),
        type=_echoed_type(raw.get("type")),
        status=Status.Failed,
        error=ErrorInfo(code=ErrorCode.ValidationError, message=message),
        processed_at=now,
    )
