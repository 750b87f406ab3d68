"""How a client reads a results-topic record: a `duplicate` header turns the original's value
into the seed API's DuplicateReferenceId answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from processor.client import read_result
from schemas.errors import ErrorCode
from schemas.results import Result
from schemas.states import Status

ORIGINAL = Result(reference_id="r", project_id="p", type="wallet.open", status=Status.Completed, processed_at=datetime(2026, 1, 1, tzinfo=UTC))


@dataclass
class Record:
    value: bytes
    headers: list
    timestamp: int = 1_767_225_600_000


def test_a_plain_record_is_the_result_itself():
    assert read_result(Record(value=ORIGINAL.model_dump_json().encode(), headers=[])) == ORIGINAL


@pytest.mark.parametrize(("kind", "says_different"), [(b"same-request", False), (b"different-request", True)])
def test_a_duplicate_record_reads_as_duplicate_reference_id_with_the_original(kind, says_different):
    record = Record(value=ORIGINAL.model_dump_json().encode(), headers=[("request_type", b"transaction.run"), ("duplicate", kind)])
    result = read_result(record)
    assert result.status == Status.Failed and result.error.code == ErrorCode.DuplicateReferenceId
    assert result.original == ORIGINAL and result.type == "transaction.run"
    assert ("different request" in result.error.message) is says_different
    assert result.processed_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unknown_duplicate_kind_is_refused():
    with pytest.raises(ValueError, match="duplicate header"):
        read_result(Record(value=ORIGINAL.model_dump_json().encode(), headers=[("duplicate", b"maybe")]))
