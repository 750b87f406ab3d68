"""Record bytes -> request, ValidationError result, or dead letter (no I/O)."""

import json
from datetime import UTC, datetime

import pytest

from processor.service.records import SourceRecord, decode
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


def raw_record(value: bytes) -> SourceRecord:
    return SourceRecord(topic="t", partition=0, offset=0, key=None, value=value)


def request_bytes(**fields: object) -> bytes:
    body = {"type": "transaction.run", "project_id": "p", "reference_id": "r", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}]}
    return json.dumps({**body, **fields}).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"type": "transaction.run", "reference_id": "sur\\ud800"}', "surrogate"),
        (b'{"reference_id": "' + b"r" * 1025 + b'"}', "longer than 1024"),
        (b'{"reference_id": "r", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested deeper"),
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (b'{"reference_id": "r", "a": 1e99999999}', None),
    ],
)
def test_hostile_records_without_an_answerable_reference_are_dead_lettered(value, reason):
    decoded = decode(raw_record(value), max_bytes=1_000_000, now=NOW)
    if reason is None:  # 1e99999999 is inf for json.loads: a float, refused by validation, answered
        assert decoded.rejection is not None and decoded.rejection.error.code == ErrorCode.ValidationError
        return
    assert decoded.request is None and decoded.rejection is None
    assert reason in decoded.dlq_reason


@pytest.mark.parametrize(
    ("value", "in_message"),
    [
        (request_bytes(reference_id=""), "reference_id"),
        (request_bytes().replace(b'"1"', b"9" * 5000), "amounts must be decimal strings or integers"),
        # A long literal is never read as text by a string field (IDs are never coerced from numbers).
        (request_bytes().replace(b'"wallet_id": "w"', b'"wallet_id": ' + b"1" * 70), "valid string"),
        (request_bytes().replace(b'"1"', b'{"a":' * 40 + b"1" + b"}" * 40), "nested deeper than 32"),
        (request_bytes().replace(b'"type": "transaction.run"', b'"type": "transaction.run\\udfff"'), "does not match"),
        (request_bytes().replace(b'"project_id": "p"', b'"project_id": "p\\ud800"'), "project_id"),
        (request_bytes().replace(b'"wallet_id": "w"', b'"wallet_id": "w", "\\ud800\\u0000": 1'), "operations.0"),
    ],
)
def test_hostile_records_with_an_answerable_reference_are_answered_validation_error(value, in_message):
    decoded = decode(raw_record(value), max_bytes=1_000_000, now=NOW)
    assert decoded.dlq_reason is None and decoded.request is None, decoded
    rejection = decoded.rejection
    assert rejection.error.code == ErrorCode.ValidationError
    assert in_message in rejection.error.message
    # Everything in the answer can be published: valid UTF-8, no NUL, an echoed project only if valid.
    text = rejection.model_dump_json()
    text.encode("utf-8")
    assert "\\u0000" not in text and "\x00" not in text
    assert rejection.project_id in ("p", None)


def test_a_lone_surrogate_in_the_project_id_is_not_echoed():
    value = request_bytes().replace(b'"project_id": "p"', b'"project_id": "p\\ud800"')
    assert decode(raw_record(value), max_bytes=1_000_000, now=NOW).rejection.project_id is None


def test_an_unforeseen_error_dead_letters_the_record_alone(monkeypatch):
    import processor.service.records as module

    def explode(value: bytes) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(module.RequestAdapter, "validate_json", explode)
    decoded = decode(raw_record(request_bytes()), max_bytes=1_000_000, now=NOW)
    assert decoded.dlq_reason == "the record could not be decoded (RuntimeError)"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_only_utf8_is_read_even_when_another_encoding_would_parse(encoding):
    value = request_bytes().decode().encode(encoding)
    decoded = decode(raw_record(value), max_bytes=1_000_000, now=NOW)
    assert decoded.request is None and decoded.rejection is None
    assert "not UTF-8 JSON" in decoded.dlq_reason
