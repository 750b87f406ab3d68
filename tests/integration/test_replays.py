"""A record replayed below PostgreSQL's stored offset is never evaluated again (real PostgreSQL,
the service called directly): what was answered "nothing applied" is never applied later."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from processor.service import process_batch
from processor.signing import Verifier

UNSIGNED = Verifier(master=None, required=False)  # signatures are tested in tests/integration/test_security.py
from processor.stream.decode import SourceRecord
from schemas.errors import ErrorCode

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(processor_database_url: str):
    created = sa.create_engine(processor_database_url)
    yield created
    created.dispose()


def record(partition: int, offset: int, body: dict) -> SourceRecord:
    return SourceRecord(topic="replays", partition=partition, offset=offset, key=b"k", value=json.dumps(body).encode())


def answer(engine: sa.Engine, group: str, *records: SourceRecord):
    report = process_batch(engine=engine, records=list(records), consumer_group=group, max_request_bytes=1 << 20, verifier=UNSIGNED)
    assert not report.dead_letters
    return [json.loads(reply.value) for reply in report.replies], report.replies


def test_a_request_answered_project_not_found_is_not_applied_when_replayed_after_the_project_exists(engine):
    project, group = f"replay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    early = record(0, 0, {"type": "asset.create", "project_id": project, "asset_id": "usd", "code": "USD", "name": "D", "reference_id": "a1"})
    (first,), _ = answer(engine, group, early)
    assert first["error"]["code"] == ErrorCode.ProjectNotFound.value
    (created,), _ = answer(engine, group, record(1, 0, {"type": "project.create", "project_id": project, "name": "P", "reference_id": "p"}))
    assert created["status"] == "Completed"
    # The first record again (a crash between the database and the Kafka commit, a rebalance).
    (again,), _ = answer(engine, group, early)
    assert again == first, "a replay gets its first answer back"
    with engine.connect() as connection:
        assets = connection.execute(sa.text("SELECT count(*) FROM assets WHERE project_id = :p"), {"p": project}).scalar()
    assert assets == 0, "answered ProjectNotFound, so never applied"
    # The same request in a new record is evaluated afresh and applies.
    (fresh,), _ = answer(engine, group, record(0, 1, {**json.loads(early.value), "reference_id": "a2"}))
    assert fresh["status"] == "Completed"


def test_a_replayed_record_that_spent_its_reference_is_answered_as_the_first_time(engine):
    project, group = f"replay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    create = record(0, 0, {"type": "project.create", "project_id": project, "name": "P", "reference_id": "p"})
    (first,), _ = answer(engine, group, create)
    (again,), replies = answer(engine, group, create)
    assert again == first and replies[0].duplicate is None
