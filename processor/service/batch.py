"""The service layer: one batch of Kafka records -> one PostgreSQL transaction -> what to publish.

Synchronous on purpose: the Kafka app runs it in a worker thread, so the event loop keeps
fetching and publishing while PostgreSQL works.

Exactly-once in effect rests on the reference IDs, not on offsets:
* a request is applied only if its (project_id, reference_id) is not spent; spending it is a
  row in `processed_requests` inserted in the same transaction as the ledger changes;
* that row names the record that spent it, so a redelivery of that very record (after a crash
  between commit and publish) is answered with the stored result, exactly as the first time;
* two processors racing on one reference collide on the primary key; the batch that loses is
  rolled back and run again, and then finds the reference spent.

The reply topic is compacted by "{project_id}/{reference_id}", so every record published under
a key must carry the reference's real answer. Any later record with a spent reference (a retry,
a different request reusing the reference, an invalid one) is answered with the original's
value and a `duplicate` header (`same-request` when its value is byte-for-byte the one that
spent the reference, `different-request` otherwise): compaction keeps the real answer, and the
retry still learns it was one (docs/contract.md, "Duplicates").

Every record ends as a reply or a dead letter, each built in isolation: one record that cannot
be answered never takes the batch down.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

from processor.failpoints import failpoint
from processor.ledger.engine import apply_batch
from processor.ledger.state_keys import state_keys
from processor.ledger.outcome import BatchOutcome
from processor.ledger.state import LedgerState, ReferenceKey
from processor.ledger.views import error_info, failed_result
from schemas.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Verifier, key_id_of
from processor.storage.failures import database_unavailable, describe, is_conflict
from processor.storage.sources import Source, Spender
from processor.storage.writing import StoredResults
from processor.service.unit_of_work import UnitOfWork, UnitOfWorkFactory
from processor.service.records import Decoded, SourceRecord, decode, safe_text
from schemas.errors import ErrorCode
from schemas.requests import RequestModel, is_reference_id, request_project_id
from schemas.results import DIFFERENT_REQUEST, SAME_REQUEST, Result, result_key

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 8


@dataclass(slots=True, frozen=True, kw_only=True)
class Reply:
    """A result to publish for one record, key and value already encoded."""

    record: SourceRecord
    result: Result  # what this record got (for a repeat: the answer it would get, with `original`)
    key: bytes
    value: bytes  # the reference's real answer: for a duplicate, the original's
    duplicate: str | None = None  # SAME_REQUEST | DIFFERENT_REQUEST for a repeat of a spent reference
    honours_reply_to: bool = True  # False for a refused request: it may not direct where anything goes


@dataclass(slots=True, frozen=True, kw_only=True)
class DeadLetter:
    record: SourceRecord
    reason: str


@dataclass(slots=True, kw_only=True)
class BatchReport:
    replies: list[Reply] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Seconds in each phase of the batch (PHASES), and how often it ran again after a conflict
    # with another processor: for the Kafka app's metrics (processor/stream/metrics.py).
    phase_seconds: dict[str, float] = field(default_factory=dict)
    conflict_retries: int = 0

    def extend(self, other: BatchReport) -> None:
        self.replies += other.replies
        self.dead_letters += other.dead_letters
        for phase, seconds in other.phase_seconds.items():
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + seconds
        self.conflict_retries += other.conflict_retries


PHASES = ("decode", "load_and_lock", "engine", "write", "commit")


class PhaseClock:
    """Laps of one batch's phases: `lap(phase)` adds the time since the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def key_of(result: Result) -> bytes:
    """The key `result` is published under. Raises for text that is not UTF-8."""
    return result_key(project_id=result.project_id, reference_id=result.reference_id).encode()


def fingerprint(record: SourceRecord) -> bytes:
    return hashlib.sha256(record.value or b"").digest()


def next_offsets(records: Sequence[SourceRecord]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


def process_batch(
    *,
    unit_of_work: UnitOfWorkFactory,
    records: Sequence[SourceRecord],
    consumer_group: str,
    max_request_bytes: int,
    verifier: Verifier,
) -> BatchReport:
    """Decode, apply and commit one batch; return what to publish, in record order.

    Raises when PostgreSQL is unreachable (`database_unavailable`): the caller waits and calls
    again with the same records (nothing was committed). Any other error is a poison record
    (the database refused it): the batch is split and each record committed on its own, so that
    the one at fault fails alone and never blocks its partition.
    """
    try:
        return _with_conflict_retries(unit_of_work=unit_of_work, records=records, consumer_group=consumer_group, max_request_bytes=max_request_bytes, verifier=verifier)
    except Exception as error:  # noqa: BLE001 - isolate the record at fault
        if database_unavailable(error):
            raise
        if len(records) > 1:
            log.error("a batch of %d records failed (%s); committing them one by one", len(records), _describe(error))
            report = BatchReport()
            for record in records:
                report.extend(process_batch(unit_of_work=unit_of_work, records=[record], consumer_group=consumer_group, max_request_bytes=max_request_bytes, verifier=verifier))
            return report
        return _refused(unit_of_work, records[0], error=error, consumer_group=consumer_group, max_request_bytes=max_request_bytes)


def _describe(error: BaseException) -> str:
    return safe_text(describe(error), limit=300)


def _with_conflict_retries(*, unit_of_work: UnitOfWorkFactory, records: Sequence[SourceRecord], consumer_group: str, max_request_bytes: int, verifier: Verifier) -> BatchReport:
    """A batch that conflicted with another processor's (the same reference spent on two
    partitions at once, a deadlock) is rolled back and run again, which then sees the other's
    commit; after MAX_CONFLICT_RETRIES the error is the record's (see `process_batch`)."""
    retrying = Retrying(
        retry=retry_if_exception(is_conflict),
        stop=stop_after_attempt(MAX_CONFLICT_RETRIES + 1),
        wait=wait_incrementing(start=0.01, increment=0.01),
        before_sleep=lambda state: log.info("batch conflicted with another processor (%s); running it again", _describe(state.outcome.exception())),  # type: ignore[union-attr]
        reraise=True,
    )
    report = retrying(_process_once, unit_of_work=unit_of_work, records=records, consumer_group=consumer_group, max_request_bytes=max_request_bytes, verifier=verifier)
    report.conflict_retries = retrying.statistics.get("attempt_number", 1) - 1
    return report


def _process_once(*, unit_of_work: UnitOfWorkFactory, records: Sequence[SourceRecord], consumer_group: str, max_request_bytes: int, verifier: Verifier) -> BatchReport:
    now = datetime.now(UTC)
    clock = PhaseClock()
    decoded: list[Decoded] = [decode(record, max_bytes=max_request_bytes, now=now) for record in records]
    clock.lap("decode")

    with unit_of_work() as uow:
        floors = _floors(uow, decoded, consumer_group=consumer_group)
        # Before any state is loaded: a refused request locks nothing of the project it aimed at.
        decoded, refused = _authenticate(uow, decoded, verifier=verifier, floors=floors, now=now)
        candidates = [d for d in decoded if d.request is not None]
        state = uow.load_state(state_keys([d.request for d in candidates]))  # type: ignore[misc]
        decoded = _hold_replays(uow, decoded, state=state, floors=floors)
        to_apply = [d for d in decoded if d.request is not None]
        clock.lap("load_and_lock")  # lock waits included
        outcome = apply_batch(requests=[d.request for d in to_apply], state=state, now=now, log_times=[d.record.log_time for d in to_apply])  # type: ignore[misc]
        for index, fault in outcome.faults:
            log.error("the engine failed on the record at %s (%s); answered InternalError", to_apply[index].record.where, _describe(fault))
        clock.lap("engine")
        spenders = _spenders(to_apply, outcome)
        uow.store_record_answers([*refused, *_unspent_answers(to_apply, outcome, spenders=spenders)], now=now)
        originals = dict(state.references)
        rejected = sorted({key for d in decoded if (key := _rejection_key(d)) is not None} - originals.keys())
        if rejected:  # rare: invalid records whose reference may have been spent before
            originals.update(uow.load_references(rejected))
        stored = uow.write(outcome, spenders=spenders, now=now)
        uow.store_offsets(consumer_group=consumer_group, offsets=next_offsets(records), now=now)
        clock.lap("write")
        failpoint("before_db_commit")
        uow.commit()
        failpoint("after_db_commit")
        clock.lap("commit")

    sources, hashes = dict(uow.reference_sources), dict(uow.reference_hashes)
    for spent in outcome.references:  # spent by this batch
        key = (spent.project_id, spent.reference_id)
        originals.setdefault(key, spent.result)
        sources[key], hashes[key] = spenders[key]
    answers = _Answers(originals=originals, sources=sources, hashes=hashes, stored=stored)
    report = BatchReport(phase_seconds=clock.seconds)
    results = iter(outcome.results)
    for item in decoded:
        result = next(results) if item.request is not None else None
        answers.add(report, item, result)
    return report


def _floors(uow: UnitOfWork, decoded: Sequence[Decoded], *, consumer_group: str) -> dict[tuple[str, int], int]:
    """PostgreSQL's stored offsets of the batch's partitions: what is below was processed before."""
    floors: dict[tuple[str, int], int] = {}
    for topic in {d.record.topic for d in decoded}:
        floors.update({(topic, p): o for p, o in uow.load_offsets(consumer_group=consumer_group, topic=topic).items()})
    return floors


def _below_floor(item: Decoded, floors: Mapping[tuple[str, int], int]) -> bool:
    return item.record.offset < floors.get((item.record.topic, item.record.partition), 0)


def _hold_replays(uow: UnitOfWork, decoded: list[Decoded], *, state: LedgerState, floors: Mapping[tuple[str, int], int]) -> list[Decoded]:
    """Records below PostgreSQL's stored offset were processed before (a replay after a crash or
    a rebalance): never evaluated again. One that got an answer kept by record
    (`record_answers`: it spent nothing, e.g. ProjectNotFound or Unauthorized) gets it back; one
    whose reference is spent goes on to the engine, which answers it from the stored result and
    changes nothing; any other is answered, not applied."""
    below = [d for d in decoded if d.request is not None and _below_floor(d, floors)]
    if not below:
        return decoded
    stored = uow.load_record_answers([(d.record.topic, d.record.partition, d.record.offset) for d in below])
    held = [
        d
        for d in below
        if (d.record.topic, d.record.partition, d.record.offset) in stored
        or (request_project_id(d.request), d.request.reference_id) not in state.references  # type: ignore[union-attr]
    ]
    answered = {id(d): _held_answer(d, stored) for d in held}
    return [answered.get(id(d), d) for d in decoded]


def _authenticate(
    uow: UnitOfWork, decoded: list[Decoded], *, verifier: Verifier, floors: Mapping[tuple[str, int], int], now: datetime
) -> tuple[list[Decoded], list[tuple[Source, Result]]]:
    """The tenant wall: a request whose signature does not hold (schemas/signing.py) is
    answered Unauthorized and never reaches the ledger. The answer is kept by record, like any
    answer that spent nothing. A replay (below PostgreSQL's offset) is not checked again: it was
    checked the first time, and gets its first answer back whatever became of the key since."""
    requests = [d for d in decoded if d.request is not None and not _below_floor(d, floors)]
    named = {key_id_of(d.record.header_bytes(KEY_ID_HEADER)) for d in requests} - {None}
    scopes = uow.load_signing_keys(sorted(named))  # type: ignore[arg-type]
    checked: list[Decoded] = []
    refused: list[tuple[Source, Result]] = []
    for item in decoded:
        request, record = item.request, item.record
        if request is None or _below_floor(item, floors):
            checked.append(item)
            continue
        raw_key_id = record.header_bytes(KEY_ID_HEADER)
        reason = verifier.refusal(
            value=record.value or b"",
            key_id=raw_key_id,
            signed=record.header_bytes(SIGNATURE_HEADER),
            project_id=request_project_id(request),
            scope=scopes.get(key_id_of(raw_key_id) or ""),
            request_type=request.type,
        )
        if reason is None:
            checked.append(item)
            continue
        answer = _failed(request, ErrorCode.Unauthorized, f"{reason}; nothing was applied", now=now)
        checked.append(Decoded(record=record, rejection=answer))
        refused.append(((record.topic, record.partition, record.offset), answer))
    return checked, refused


def _failed(request: RequestModel, code: ErrorCode, message: str, *, now: datetime) -> Result:
    """A Failed answer to `request` that the service gives itself (nothing was applied)."""
    return failed_result(
        reference_id=request.reference_id,
        project_id=request_project_id(request),
        request_type=request.type,
        error=error_info(code, message),
        processed_at=now,
    )


def _held_answer(item: Decoded, stored: Mapping[Source, Result]) -> Decoded:
    record, request = item.record, item.request
    assert request is not None
    answer = stored.get((record.topic, record.partition, record.offset))
    if answer is None:  # processed before its answer was kept (an older version): never applied twice
        message = "this record was processed before and is not applied again; its first answer was not kept"
        answer = _failed(request, ErrorCode.InternalError, message, now=datetime.now(UTC))
    return Decoded(record=record, rejection=answer)


def _unspent_answers(applied: Sequence[Decoded], outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender]) -> list[tuple[Source, Result]]:
    """Answers of evaluated requests that spent nothing and are not repeats (ProjectNotFound,
    InternalError): kept by record, for a replay (`_hold_replays`)."""
    spent_by = {spender[0] for spender in spenders.values()}
    kept = []
    for item, result in zip(applied, outcome.results, strict=True):
        source = (item.record.topic, item.record.partition, item.record.offset)
        if source not in spent_by and (result.error is None or result.error.code != ErrorCode.DuplicateReferenceId):
            kept.append((source, result))
    return kept


def _spenders(applied: Sequence[Decoded], outcome: BatchOutcome) -> dict[ReferenceKey, Spender]:
    """The record that spent each reference this batch spent, with its fingerprint."""
    spent = {id(reference.result): (reference.project_id, reference.reference_id) for reference in outcome.references}
    spenders: dict[ReferenceKey, Spender] = {}
    for item, result in zip(applied, outcome.results, strict=True):
        key = spent.get(id(result))
        if key is not None:
            record = item.record
            spenders[key] = ((record.topic, record.partition, record.offset), fingerprint(record))
    return spenders


def _rejection_key(item: Decoded) -> ReferenceKey | None:
    """The reference an answered-but-not-applied record may repeat; None when it cannot name a
    spent one (only a valid reference ID can be spent, and a NUL must never reach PostgreSQL)."""
    rejection = item.rejection
    if rejection is None or rejection.project_id is None or not is_reference_id(rejection.reference_id):
        return None
    return (rejection.project_id, rejection.reference_id)


@dataclass(slots=True, kw_only=True)
class _Answers:
    """Turns each record's outcome into the bytes to publish, one record at a time."""

    originals: Mapping[ReferenceKey, Result]  # every reference spent, before or in this batch
    sources: Mapping[ReferenceKey, Source]  # the record that spent it
    hashes: Mapping[ReferenceKey, bytes]  # that record's fingerprint
    stored: StoredResults  # the JSON each reference spent by this batch was stored with

    def add(self, report: BatchReport, item: Decoded, result: Result | None) -> None:
        record = item.record
        if item.dlq_reason is not None:
            report.dead_letters.append(DeadLetter(record=record, reason=item.dlq_reason))
            return
        try:
            report.replies.append(self._reply(item, result))
        except Exception as error:  # noqa: BLE001 - this record's answer cannot be built: it alone goes to the DLQ
            log.error("the answer to the record at %s could not be built (%s); dead-lettering it", record.where, _describe(error))
            report.dead_letters.append(DeadLetter(record=record, reason=f"the answer could not be built ({type(error).__name__})"))

    def _reply(self, item: Decoded, result: Result | None) -> Reply:
        record = item.record
        if result is None:
            assert item.rejection is not None, "a record is a request, a rejection or a dead letter"
            key = _rejection_key(item)
            original = self.originals.get(key) if key is not None else None
            if item.rejection.error is not None and item.rejection.error.code == ErrorCode.Unauthorized:
                return self._refusal(record, item.rejection, spent=original is not None)
            if original is None:
                return Reply(record=record, result=item.rejection, key=key_of(item.rejection), value=self._json(item.rejection))
            # An invalid request can never be the one that spent the reference.
            return self._duplicate(record, item.rejection, original, DIFFERENT_REQUEST)
        original = result.original
        if result.error is None or result.error.code != ErrorCode.DuplicateReferenceId or original is None:
            return Reply(record=record, result=result, key=key_of(result), value=self._json(result))
        key = (original.project_id or "", original.reference_id)
        if self.sources.get(key) == (record.topic, record.partition, record.offset):
            # A redelivery of the record that spent the reference: answered as the first time.
            return Reply(record=record, result=original, key=key_of(original), value=self._json(original))
        stored_hash = self.hashes.get(key)
        same = stored_hash is None or stored_hash == fingerprint(record)
        return self._duplicate(record, result, original, SAME_REQUEST if same else DIFFERENT_REQUEST)

    def _refusal(self, record: SourceRecord, refusal: Result, *, spent: bool) -> Reply:
        """An Unauthorized answer: the refusal alone, on the results topic. Never the original of
        a spent reference (the request may not read it), and then under a key of its own, which
        no real answer has, so that compaction keeps the original."""
        key = f"/unauthorized/{record.topic}/{record.partition}/{record.offset}".encode() if spent else key_of(refusal)
        return Reply(record=record, result=refusal, key=key, value=self._json(refusal), honours_reply_to=False)

    def _duplicate(self, record: SourceRecord, result: Result, original: Result, kind: str) -> Reply:
        return Reply(record=record, result=result, key=key_of(original), value=self._json(original), duplicate=kind)

    def _json(self, result: Result) -> bytes:
        text = self.stored.json_of(result)
        return (text if text is not None else result.model_dump_json()).encode()


def _refused(unit_of_work: UnitOfWorkFactory, record: SourceRecord, *, error: Exception, consumer_group: str, max_request_bytes: int) -> BatchReport:
    """The database refused this one record: answer it InternalError, change nothing, spend
    nothing, and move PostgreSQL's offset past it (it would fail again)."""
    log.error("the record at %s failed alone (%s); answering it InternalError", record.where, _describe(error))
    now = datetime.now(UTC)
    item = decode(record, max_bytes=max_request_bytes, now=now)
    evaluated = item.request is not None  # its answer is kept for a replay (a decoded one is deterministic)
    if item.request is not None:
        request = item.request
        message = f"this request could not be processed ({type(error).__name__}); nothing was applied"
        failed = _failed(request, ErrorCode.InternalError, message, now=now)
        item = Decoded(record=record, rejection=failed)  # answered, never applied
    key = _rejection_key(item)
    report = BatchReport()
    try:
        with unit_of_work() as uow:
            originals = uow.load_references([key]) if key is not None else {}
            if evaluated and key not in originals:  # a replay gets this answer back
                uow.store_record_answers([((record.topic, record.partition, record.offset), item.rejection)], now=now)  # type: ignore[list-item]
            uow.store_offsets(consumer_group=consumer_group, offsets=next_offsets([record]), now=now)
            uow.commit()
    except Exception as again:  # noqa: BLE001 - never block the partition on this record
        if database_unavailable(again):
            raise
        # Its reference may be spent: an answer under its key could hide the real one.
        log.error("the record at %s failed again while being answered (%s); dead-lettering it", record.where, _describe(again))
        report.dead_letters.append(DeadLetter(record=record, reason=f"this record failed in the database ({type(error).__name__}, then {type(again).__name__}); nothing was applied"))
        return report
    _Answers(originals=originals, sources={}, hashes={}, stored=StoredResults()).add(report, item, None)
    return report
