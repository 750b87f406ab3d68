"""A record replayed below PostgreSQL's stored offset is never evaluated again (real PostgreSQL,
the service called directly): what was answered "nothing applied" is never applied later."""

from __future__ import annotations

import functools

import json
import uuid

import pytest
import sqlalchemy as sa

from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from processor.service.batch import process_batch
from schemas.signing import Verifier

from processor.service.records import SourceRecord
from schemas.errors import ErrorCode

pytestmark = pytest.mark.integration
UNSIGNED = Verifier(master=None, required=False)  # signatures: tests/e2e/test_security.py, test_replays.py


@pytest.fixture(scope="module")
def engine(processor_database_url: str):
    created = sa.create_engine(processor_database_url)
    yield created
    created.dispose()


def topic_of(body: dict) -> str:
    """A topic per test (its project's): a record is known by topic, partition and offset."""
    return f"replays.{body.get('project_id', 'none')}"


def record(partition: int, offset: int, body: dict) -> SourceRecord:
    return SourceRecord(topic=topic_of(body), partition=partition, offset=offset, key=b"k", value=json.dumps(body).encode())


def answer(engine: sa.Engine, group: str, *records: SourceRecord):
    report = process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=list(records), consumer_group=group, max_request_bytes=1 << 20, verifier=UNSIGNED)
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


# ------------------------------------------------------------------------- signed requests

MASTER = b"replay-master-secret-of-at-least-32-bytes"
SIGNED = Verifier(master=MASTER, required=True)


def signed(partition: int, offset: int, body: dict, *, key=None, headers=()) -> SourceRecord:
    value = json.dumps(body).encode()
    signature = tuple(key.headers(value)) if key is not None else ()
    return SourceRecord(topic=topic_of(body), partition=partition, offset=offset, key=b"k", value=value, headers=(*headers, *signature))


def answer_signed(engine: sa.Engine, group: str, *records: SourceRecord):
    report = process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=list(records), consumer_group=group, max_request_bytes=1 << 20, verifier=SIGNED)
    assert not report.dead_letters
    return report.replies


def test_a_replay_after_its_key_was_revoked_gets_its_first_answer(engine, database_url):
    from processor.signing_keys import create_signing_key, revoke_signing_key

    owner = sa.create_engine(database_url)  # keys are made and revoked by the operator
    project, group = f"replay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    key = create_signing_key(owner, master=MASTER, project_id=project)
    create = signed(0, 0, {"type": "project.create", "project_id": project, "name": "P", "reference_id": "p"}, key=key)
    (first,) = answer_signed(engine, group, create)
    assert json.loads(first.value)["status"] == "Completed"
    assert revoke_signing_key(owner, key.key_id)
    owner.dispose()
    (again,) = answer_signed(engine, group, create)  # below PostgreSQL's offset: not checked again
    assert (again.value, again.duplicate, again.key) == (first.value, None, first.key), "a replay is answered as the first time"
    (fresh,) = answer_signed(engine, group, signed(0, 1, {"type": "asset.create", "project_id": project, "asset_id": "usd", "code": "USD", "name": "D", "reference_id": "u"}, key=key))
    assert json.loads(fresh.value)["error"]["code"] == ErrorCode.Unauthorized.value, "a new record with the revoked key is refused"


def test_a_forged_repeat_of_a_spent_reference_reads_nothing_and_directs_nothing(engine, database_url):
    from processor.signing_keys import create_signing_key

    owner = sa.create_engine(database_url)
    project, group = f"replay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    key = create_signing_key(owner, master=MASTER, project_id=project)
    owner.dispose()
    body = {"type": "project.create", "project_id": project, "name": "Secret name", "reference_id": "p"}
    (real,) = answer_signed(engine, group, signed(0, 0, body, key=key))
    forged = signed(0, 1, body, headers=(("reply_to", b"wallet.results.reply.attacker"),))  # unsigned
    for attempt in (1, 2):  # the second time is a replay below PostgreSQL's offset
        (refusal,) = answer_signed(engine, group, forged)
        answer_ = json.loads(refusal.value)
        assert answer_["error"]["code"] == ErrorCode.Unauthorized.value and "Secret name" not in refusal.value.decode(), attempt
        assert refusal.key == f"/unauthorized/{topic_of(body)}/0/1".encode() and refusal.key != real.key, "compaction keeps the real answer"
        assert not refusal.honours_reply_to and refusal.duplicate is None
