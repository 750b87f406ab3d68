"""Record bytes -> request, ValidationError result, or dead letter (no I/O)."""

import json
from datetime import UTC, datetime

import pytest

from processor.stream.decode import SourceRecord, decode
from schemas.errors import ErrorCode

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(value: bytes | None) -> SourceRecord:
    return SourceRecord(topic="t", partition=0, offset=0, key=None, value=value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (b'{"type": "project.create", "name": "x"}', "reference_id"),
        (b'{"type": "project.create", "reference_id": 7}', "reference_id"),
        (b'{"reference_id": "r", "pad": "' + b"x" * 2000 + b'"}', "over the 1024-byte limit"),
    ],
)
def test_undecodable_records_become_dead_letters_with_the_reason(value, reason):
    decoded = decode(record(value), max_bytes=1024, now=NOW)
    assert decoded.request is None and decoded.rejection is None
    assert reason in decoded.dlq_reason


def test_a_decodable_but_invalid_request_is_answered_with_validation_error():
    body = {"type": "transaction.run", "project_id": "p", "reference_id": "r", "operations": [{"type": "Issue", "wallet_id": "w", "amount": 0.1}]}
    decoded = decode(record(json.dumps(body).encode()), max_bytes=1024, now=NOW)
    assert decoded.dlq_reason is None and decoded.request is None
    result = decoded.rejection
    assert (result.reference_id, result.project_id, result.status.value) == ("r", "p", "Failed")
    assert result.error.code == ErrorCode.ValidationError
    assert "operations.0" in result.error.message and "binary floats" in result.error.message


def test_a_valid_request_decodes():
    body = {"type": "wallet.rename", "project_id": "p", "reference_id": "r", "wallet_id": "w", "name": "Main"}
    decoded = decode(record(json.dumps(body).encode()), max_bytes=1024, now=NOW)
    assert decoded.request is not None and decoded.request.type == "wallet.rename"
