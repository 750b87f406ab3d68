"""Turning a batch's outcomes into what is published (no database): duplicates keep the
original's value under the original's key, and only the record that spent a reference is
recorded as its spender."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from processor.ledger.outcome import BatchOutcome, ReferenceRecord
from processor.storage.writing import StoredResults
from processor.service.batch import BatchReport, _Answers, _rejection_key, _spenders, fingerprint
from processor.service.records import Decoded, SourceRecord, decode
from schemas.errors import ErrorCode
from schemas.results import ErrorInfo, Result, result_key
from schemas.states import Status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(offset: int, value: bytes = b"{}") -> SourceRecord:
    return SourceRecord(topic="requests", partition=0, offset=offset, key=None, value=value)


def completed(reference: str = "r") -> Result:
    return Result(reference_id=reference, project_id="p", type="wallet.rename", status=Status.Completed, processed_at=NOW)


def repeat_of(original: Result) -> Result:
    error = ErrorInfo(code=ErrorCode.DuplicateReferenceId, message="used")
    return Result(reference_id="r", project_id="p", type="wallet.rename", status=Status.Failed, error=error, processed_at=NOW, original=original)


def answers(original: Result, *, spender: SourceRecord) -> _Answers:
    key = ("p", "r")
    return _Answers(originals={key: original}, sources={key: ("requests", 0, spender.offset)}, hashes={key: fingerprint(spender)}, stored=StoredResults())


def test_result_keys_without_a_project_can_never_be_a_real_key():
    assert result_key(project_id="shop", reference_id="order-1") == "shop/order-1"
    assert result_key(project_id=None, reference_id="shop/order-1") == "/shop/order-1"


def test_a_repeat_carries_the_originals_value_and_says_whether_it_is_the_same_request():
    original = completed()
    spender = record(1, b'{"same": 1}')
    report = BatchReport()
    given = answers(original, spender=spender)
    given.add(report, Decoded(record=record(5, b'{"same": 1}'), request=object()), repeat_of(original))  # type: ignore[arg-type]
    given.add(report, Decoded(record=record(6, b'{"other": 1}'), request=object()), repeat_of(original))  # type: ignore[arg-type]
    given.add(report, Decoded(record=spender, request=object()), repeat_of(original))  # type: ignore[arg-type]
    retry, other, redelivery = report.replies
    assert retry.value == other.value == redelivery.value == original.model_dump_json().encode()
    assert retry.key == other.key == redelivery.key == b"p/r"
    assert (retry.duplicate, other.duplicate, redelivery.duplicate) == ("same-request", "different-request", None)


def test_an_invalid_record_with_a_spent_reference_is_answered_as_a_different_request():
    original = completed()
    invalid = decode(record(7, json.dumps({"type": "wallet.rename", "project_id": "p", "reference_id": "r"}).encode()), max_bytes=1000, now=NOW)
    assert invalid.rejection is not None and _rejection_key(invalid) == ("p", "r")
    report = BatchReport()
    answers(original, spender=record(1)).add(report, invalid, None)
    (reply,) = report.replies
    assert reply.value == original.model_dump_json().encode() and reply.duplicate == "different-request"


def test_references_that_can_never_be_spent_are_not_looked_up():
    for reference in ("", "nul\x00", " ", "x" * 129):
        body = {"type": "wallet.rename", "project_id": "p", "reference_id": reference}
        item = decode(record(1, json.dumps(body).encode()), max_bytes=1000, now=NOW)
        assert item.rejection is not None and _rejection_key(item) is None, reference


def test_the_spender_is_the_record_whose_result_spent_the_reference():
    not_found, spent = completed(), completed()
    outcome = BatchOutcome()
    outcome.results += [not_found, spent]
    outcome.references.append(ReferenceRecord(project_id="p", reference_id="r", request_type="wallet.rename", result=spent))
    first, second = Decoded(record=record(1, b"a")), Decoded(record=record(2, b"b"))
    assert _spenders([first, second], outcome) == {("p", "r"): (("requests", 0, 2), fingerprint(second.record))}
