"""The service's rules with an in-memory unit of work (no database): what a batch answers, how a
redelivery and a repeat are told apart, that a record the database refuses fails alone, that
conflicts run the batch again, and that nothing is kept when a batch is not committed."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors

from processor.service.batch import BatchReport, process_batch
from processor.service.records import SourceRecord
from schemas.errors import ErrorCode
from schemas.results import DIFFERENT_REQUEST, SAME_REQUEST
from schemas.signing import Verifier

from .fake_unit_of_work import FakeDatabase, FakeUnitOfWork

UNSIGNED = Verifier(master=None, required=False)
SETUP = [
    {"type": "project.create", "project_id": "p", "name": "P", "reference_id": "p"},
    {"type": "asset.create", "project_id": "p", "asset_id": "usd", "code": "USD", "name": "Dollar", "reference_id": "a"},
    {"type": "customer.upsert", "project_id": "p", "customer_id": "c", "reference_id": "c"},
    {"type": "wallet.open", "project_id": "p", "customer_id": "c", "asset_id": "usd", "wallet_id": "A", "reference_id": "wa"},
    {"type": "wallet.open", "project_id": "p", "customer_id": "c", "asset_id": "usd", "wallet_id": "B", "reference_id": "wb"},
]


def issue(reference: str, amount: str = "5", wallet: str = "A") -> dict:
    return {"type": "transaction.run", "project_id": "p", "reference_id": reference, "operations": [{"type": "Issue", "wallet_id": wallet, "amount": amount}]}


def records(requests: list[dict], *, start: int = 0, topic: str = "requests") -> list[SourceRecord]:
    return [SourceRecord(topic=topic, partition=0, offset=start + i, key=None, value=json.dumps(r).encode()) for i, r in enumerate(requests)]


def run(database: FakeDatabase, batch: list[SourceRecord], *, unit_of_work=None, verifier: Verifier = UNSIGNED) -> BatchReport:
    return process_batch(
        unit_of_work=unit_of_work or database.unit_of_work, records=batch, consumer_group="g", max_request_bytes=1 << 20, verifier=verifier
    )


@pytest.fixture
def database() -> FakeDatabase:
    db = FakeDatabase()
    report = run(db, records(SETUP, topic="setup"))
    assert [r.result.status.value for r in report.replies] == ["Completed"] * len(SETUP)
    return db


def test_a_batch_is_applied_answered_in_order_and_its_offsets_stored(database: FakeDatabase) -> None:
    report = run(database, records([issue("i1"), issue("i2", "7", "B")]))
    assert [(r.result.reference_id, r.result.status.value) for r in report.replies] == [("i1", "Completed"), ("i2", "Completed")]
    assert database.ledger.balance("p", "A") == 500 and database.ledger.balance("p", "B") == 700
    assert database.offsets[("g", "requests", 0)] == 2
    # The published bytes are the stored result's JSON, under the result key.
    assert json.loads(report.replies[0].value)["reference_id"] == "i1" and report.replies[0].key == b"p/i1"


def test_a_redelivered_record_gets_its_first_answer_and_changes_nothing(database: FakeDatabase) -> None:
    first = run(database, records([issue("i1")]))
    again = run(database, records([issue("i1")]))  # the same record (same topic, partition, offset)
    assert database.ledger.balance("p", "A") == 500
    assert again.replies[0].value == first.replies[0].value and again.replies[0].duplicate is None


def test_a_repeat_is_marked_same_or_different_request(database: FakeDatabase) -> None:
    first = run(database, records([issue("i1")]))
    same = run(database, records([issue("i1")], start=10))
    different = run(database, records([issue("i1", "9")], start=11))
    assert database.ledger.balance("p", "A") == 500
    assert (same.replies[0].duplicate, different.replies[0].duplicate) == (SAME_REQUEST, DIFFERENT_REQUEST)
    assert same.replies[0].value == first.replies[0].value == different.replies[0].value  # the original's answer


def test_a_record_the_database_refuses_fails_alone(database: FakeDatabase) -> None:
    class RefusesI2(FakeUnitOfWork):
        def write(self, outcome, **kwargs):  # type: ignore[no-untyped-def]
            if any(r.reference_id == "i2" for r in outcome.references):
                raise sa.exc.DBAPIError("COPY", None, pg_errors.CheckViolation("value too long"))
            return super().write(outcome, **kwargs)

    report = run(database, records([issue("i1"), issue("i2"), issue("i3")]), unit_of_work=lambda: RefusesI2(database))
    answers = {r.result.reference_id: r.result for r in report.replies}
    assert answers["i1"].status.value == answers["i3"].status.value == "Completed"
    assert answers["i2"].error is not None and answers["i2"].error.code == ErrorCode.InternalError
    assert database.ledger.balance("p", "A") == 1000  # i1 and i3 only
    assert database.offsets[("g", "requests", 0)] == 3  # moved past the refused record


def test_a_conflict_runs_the_batch_again(database: FakeDatabase) -> None:
    attempts = []

    class ConflictsOnce(FakeUnitOfWork):
        def commit(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise sa.exc.DBAPIError("COPY", None, pg_errors.UniqueViolation("duplicate key"))
            super().commit()

    report = run(database, records([issue("i1")]), unit_of_work=lambda: ConflictsOnce(database))
    assert len(attempts) == 2 and report.replies[0].result.status.value == "Completed"
    assert database.ledger.balance("p", "A") == 500
    assert report.conflict_retries == 1  # counted for cloudwallet_batch_conflict_retries_total


def test_a_batch_reports_the_time_of_each_phase(database: FakeDatabase) -> None:
    from processor.service.batch import PHASES

    report = run(database, records([issue("i1"), issue("i2")]))
    assert set(report.phase_seconds) == set(PHASES) and all(seconds >= 0 for seconds in report.phase_seconds.values())
    assert report.conflict_retries == 0


def test_an_unavailable_database_raises_and_keeps_nothing(database: FakeDatabase) -> None:
    class Unreachable(FakeUnitOfWork):
        def commit(self) -> None:
            raise sa.exc.DBAPIError("COMMIT", None, pg_errors.AdminShutdown("terminating connection"))

    commits = database.commits
    with pytest.raises(sa.exc.DBAPIError):
        run(database, records([issue("i1")]), unit_of_work=lambda: Unreachable(database))
    assert database.commits == commits and database.ledger.balance("p", "A") == 0 and ("g", "requests", 0) not in database.offsets


def test_an_unsigned_request_is_refused_when_signatures_are_required(database: FakeDatabase) -> None:
    report = run(database, records([issue("i1")]), verifier=Verifier(master=b"m" * 32, required=True))
    result = report.replies[0].result
    assert result.error is not None and result.error.code == ErrorCode.Unauthorized and not report.replies[0].honours_reply_to
    assert database.ledger.balance("p", "A") == 0


def test_a_replay_below_the_stored_offset_is_answered_not_applied(database: FakeDatabase) -> None:
    database.offsets[("g", "requests", 0)] = 5  # records below 5 were processed before
    report = run(database, records([issue("i1")]))
    assert database.ledger.balance("p", "A") == 0
    assert report.replies[0].result.error is not None and report.replies[0].result.error.code == ErrorCode.InternalError
