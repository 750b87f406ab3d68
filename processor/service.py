"""The service layer: one batch of Kafka records -> one PostgreSQL transaction -> what to publish.

Synchronous on purpose: the Kafka app runs it in a worker thread, so the event loop keeps
fetching and publishing while PostgreSQL works.

Exactly-once in effect rests on the reference IDs, not on offsets:
* a request is applied only if its (project_id, reference_id) is not spent; spending it is a
  row in `processed_requests` inserted in the same transaction as the ledger changes;
* that row names the record that spent it, so a redelivery of that very record (after a crash
  between commit and publish) is answered with the stored result, while any other record with
  the same reference gets DuplicateReferenceId;
* two processors racing on one reference collide on the primary key; the batch that loses is
  rolled back and run again, and then finds the reference spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from psycopg import errors as pg_errors

from processor.failpoints import failpoint
from processor.ledger.engine import apply_batch
from processor.ledger.keys import request_project_id, state_keys
from processor.ledger.views import error_info, failed_result
from processor.storage.unit_of_work import Source, UnitOfWork
from processor.stream.decode import Decoded, SourceRecord, decode
from schemas.errors import ErrorCode
from schemas.results import Result

log = logging.getLogger(__name__)

# Conflicts another processor can cause; the batch is rolled back and run again from the start.
RETRYABLE = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
MAX_CONFLICT_RETRIES = 8


@dataclass(slots=True, frozen=True, kw_only=True)
class Reply:
    """A result to publish for one record."""

    record: SourceRecord
    result: Result
    # The result's JSON when it was already serialized (as stored in processed_requests).
    payload: bytes | None = None

    def value(self) -> bytes:
        """The bytes to publish: the stored JSON when there is one, else the result serialized."""
        return self.payload if self.payload is not None else self.result.model_dump_json().encode()

    @property
    def key(self) -> bytes:
        project = self.result.project_id
        reference = self.result.reference_id
        return (f"{project}/{reference}" if project else reference).encode()


@dataclass(slots=True, frozen=True, kw_only=True)
class DeadLetter:
    record: SourceRecord
    reason: str


@dataclass(slots=True, kw_only=True)
class BatchReport:
    replies: list[Reply] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def next_offsets(records: Sequence[SourceRecord]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


def is_retryable(error: sa.exc.DBAPIError) -> bool:
    return isinstance(error.orig, RETRYABLE)


def process_batch(
    *,
    engine: sa.Engine,
    records: Sequence[SourceRecord],
    consumer_group: str,
    max_request_bytes: int,
) -> BatchReport:
    """Decode, apply and commit one batch; return what to publish, in record order.

    Raises sa.exc.OperationalError / InterfaceError when PostgreSQL is unreachable: the caller
    waits and calls again with the same records (nothing was committed). Any other database
    error is a poison record: the batch is split and each record committed on its own, so the
    one the database refuses fails alone (InternalError) and never blocks its partition.
    """
    try:
        return _with_conflict_retries(engine=engine, records=records, consumer_group=consumer_group, max_request_bytes=max_request_bytes)
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        raise
    except sa.exc.DBAPIError as error:
        if len(records) > 1:
            log.error("the database refused a batch of %d records (%s); committing them one by one", len(records), error.orig)
            report = BatchReport()
            for record in records:
                single = process_batch(engine=engine, records=[record], consumer_group=consumer_group, max_request_bytes=max_request_bytes)
                report.replies += single.replies
                report.dead_letters += single.dead_letters
            return report
        return _refused(records[0], error=error, max_request_bytes=max_request_bytes)


def _refused(record: SourceRecord, *, error: sa.exc.DBAPIError, max_request_bytes: int) -> BatchReport:
    """The database refused this one record: answer it, change nothing, spend nothing."""
    log.error("the database refused the record at %s[%d]@%d: %s", record.topic, record.partition, record.offset, error.orig)
    now = datetime.now(UTC)
    item = decode(record, max_bytes=max_request_bytes, now=now)
    report = BatchReport()
    if item.request is None:  # never reached the database: answered as decoded
        if item.dlq_reason is not None:
            report.dead_letters.append(DeadLetter(record=record, reason=item.dlq_reason))
        elif item.rejection is not None:
            report.replies.append(Reply(record=record, result=item.rejection))
        return report
    request = item.request
    report.replies.append(
        Reply(
            record=record,
            result=failed_result(
                reference_id=request.reference_id,
                project_id=request_project_id(request),
                request_type=request.type,
                error=error_info(ErrorCode.InternalError, f"the database refused this request ({type(error.orig).__name__}); nothing was applied"),
                processed_at=now,
            ),
        )
    )
    return report


def _with_conflict_retries(*, engine: sa.Engine, records: Sequence[SourceRecord], consumer_group: str, max_request_bytes: int) -> BatchReport:
    conflicts = 0
    while True:
        try:
            return _process_once(engine=engine, records=records, consumer_group=consumer_group, max_request_bytes=max_request_bytes)
        except sa.exc.DBAPIError as error:
            if not is_retryable(error) or conflicts >= MAX_CONFLICT_RETRIES:
                raise
            conflicts += 1
            log.info("batch conflicted with another processor (%s); running it again", type(error.orig).__name__)
            time.sleep(0.01 * conflicts)


def _process_once(*, engine: sa.Engine, records: Sequence[SourceRecord], consumer_group: str, max_request_bytes: int) -> BatchReport:
    now = datetime.now(UTC)
    decoded: list[Decoded] = [decode(record, max_bytes=max_request_bytes, now=now) for record in records]
    to_apply = [d for d in decoded if d.request is not None]
    requests = [d.request for d in to_apply]
    report = BatchReport()

    with UnitOfWork(engine) as uow:
        state = uow.load_state(state_keys(requests))  # type: ignore[arg-type]
        outcome = apply_batch(requests=requests, state=state, now=now)  # type: ignore[arg-type]
        # The record that spends each new reference is the first in the batch that carries it.
        spenders: dict[tuple[str, str], Source] = {}
        for item in to_apply:
            key = (request_project_id(item.request), item.request.reference_id)  # type: ignore[arg-type]
            spenders.setdefault(key, (item.record.topic, item.record.partition, item.record.offset))
        uow.write(outcome, sources=spenders, now=now)
        uow.store_offsets(consumer_group=consumer_group, offsets=next_offsets(records), now=now)
        failpoint("before_db_commit")
        uow.commit()
        failpoint("after_db_commit")
        stored_sources = uow.reference_sources
        stored_json = uow.result_json

    results = iter(outcome.results)
    for item in decoded:
        if item.dlq_reason is not None:
            report.dead_letters.append(DeadLetter(record=item.record, reason=item.dlq_reason))
            continue
        if item.rejection is not None:
            report.replies.append(Reply(record=item.record, result=item.rejection))
            continue
        result = next(results)
        if result.error is not None and result.error.code == ErrorCode.DuplicateReferenceId and result.original is not None:
            source = (item.record.topic, item.record.partition, item.record.offset)
            if stored_sources.get((result.project_id, result.reference_id)) == source:
                # A redelivery of the record that spent the reference: answer as the first time.
                result = result.original
        text = stored_json.get(id(result))
        report.replies.append(Reply(record=item.record, result=result, payload=text.encode() if text is not None else None))
    return report
