"""The Kafka app: requests in, one PostgreSQL commit per batch, results out.

Per batch of records (one poll), in two stages that overlap from one batch to the next:
1. decode, apply and commit to PostgreSQL (ledger changes, spent references with their
   results, consumer offsets) in one transaction, in a worker thread;
2. (processor/stream/results_stage.py, while stage 1 applies the next batch) publish every result
   (to `reply_to` if the record names a usable one) and every dead letter, wait until the
   broker has them all, then commit the batch's offsets to Kafka.
Stage 1 failing unexpectedly rewinds the batch (FastStream's nack) and it comes again; a crash
anywhere replays the records after Kafka's committed offset; either way the spent reference
IDs make the second pass change nothing and re-publish the same results.

Records reach the handler as raw bytes: FastStream's batch parser would decode every header
of the whole batch as UTF-8, and one binary header value would fail the batch.

PostgreSQL unreachable: the batch waits and retries, the partition pauses, nothing is skipped.
Kafka unreachable: publishing retries; offsets are not committed until the results are out.
A message the broker refuses for good (a topic that vanished, a size or authorization refusal)
is degraded one step, never retried forever: a result for `reply_to` goes to the results topic,
a result the results topic refuses becomes a dead letter, a dead letter shrinks to its reason.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from datetime import UTC, datetime
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, UnknownTopicOrPartitionError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.message import KafkaAckableMessage
from opentelemetry.trace import TracerProvider

from processor.service.batch import BatchReport, DeadLetter, next_offsets, process_batch
from processor.settings import ProcessorSettings
from processor.storage.failures import database_unavailable
from processor.storage.sources import Offsets
from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from processor.service.records import SourceRecord
from processor.stream.outbox import REPLY_TO_HEADER, Outgoing, ReplyTargets, dead_letter_message, result_message
from processor.stream.results_stage import CommittedBatch, ResultsStage
from processor.stream.publishing import Header, publish_records
from processor.stream.retries import broker_unavailable, until_it_works
from processor.stream import metrics
from processor.stream.health import HealthServer, Readiness
from processor.stream.hold_sweep import HoldSweep
from processor.stream.topics import ensure_topics
from processor.stream.tolerant_records import install as read_past_undecodable_header_keys
from processor.stream.tracing import BatchTrace, BatchTracing

log = logging.getLogger("processor")

MAX_PUBLISH_BYTES = 16 * 1024 * 1024
# How long a revocation or a shutdown waits for batches still publishing (a broker outage can
# hold them): after it, the partitions' next owner replays them, which is safe, only slower.
REVOKE_DRAIN_S = 30.0


LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it


def _untraced(_record: SourceRecord) -> tuple[Header, ...]:
    """The trace headers of an answer when the batch is not traced: none."""
    return ()


def source_record(record: Any) -> SourceRecord:
    return SourceRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
        log_time=datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp_type == LOG_APPEND_TIME else None,
    )


def raw_batch_message(records: tuple[Any, ...], *, consumer: Any) -> KafkaAckableMessage:
    """FastStream's message for a batch, with nothing decoded (its own parser decodes every
    header of every record, and fails the whole batch on one that is not UTF-8)."""
    first, last = records[0], records[-1]
    return KafkaAckableMessage(
        raw_message=records,
        body=records,
        message_id=f"{first.topic}-{first.partition}-{first.offset}-{last.offset}",
        correlation_id=f"{first.topic}-{first.partition}-{first.offset}",
        consumer=consumer,
    )


# A batch allocates tens of thousands of short-lived objects. With the default thresholds the
# cyclic collector ran dozens of times per batch, walking every long-lived object (modules,
# pydantic schemas, the Kafka clients) each time: ~15% of the processor's CPU. Once started,
# the long-lived heap is frozen and young collections happen less often.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class ResumeFromDatabase(ConsumerRebalanceListener):
    """On assignment, PostgreSQL's stored offset is the floor of where a partition resumes.

    * No offset committed in Kafka: resume from PostgreSQL's.
    * Kafka's behind PostgreSQL's (a crash between the two commits): Kafka's is followed, and
      the records between them are replayed, which re-publishes results a crash may have kept
      from going out; the spent reference IDs make the replay change nothing.
    * Kafka's ahead of PostgreSQL's: never legitimate (Kafka is committed after the database),
      it means someone else moved the group's offsets, or its state was restored or lost.
      Following it would skip records never applied: it is logged as an error and ignored.
    """

    def __init__(
        self, *, engine: sa.Engine, consumer_group: str, consumer: Callable[[], Any], drain: Callable[[], Awaitable[None]]
    ) -> None:
        self.engine = engine
        # Waits until the batches handed to the processor are published and their offsets
        # committed, so that the partitions' next owner resumes after them.
        self._drain = drain
        self.consumer_group = consumer_group
        # The subscriber creates its consumer before starting it, so it exists by assignment.
        self._consumer = consumer
        # Partitions resumed from PostgreSQL: records below this offset were processed before.
        # The fetcher may already hold some when the seek lands, so the handler drops them too.
        self.floors: dict[tuple[str, int], int] = {}
        # Cleared while a rebalance is under way; batches wait for it so that no record is
        # handled before its partition's floor is known.
        self.settled = asyncio.Event()

    def already_processed(self, record: SourceRecord) -> bool:
        return record.offset < self.floors.get((record.topic, record.partition), 0)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.settled.clear()
        log.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))
        await self._drain()
        for tp in revoked:
            self.floors.pop((tp.topic, tp.partition), None)
        metrics.forget_lag(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
        try:
            await self._resume(assigned)
        finally:
            self.settled.set()

    async def _resume(self, assigned: set[TopicPartition]) -> None:
        # aiokafka only logs what a listener raises: an outage here is waited out, or a partition
        # would start without its floor.
        consumer = self._consumer()
        if consumer is None or not assigned:
            return
        stored: dict[str, dict[int, int]] = {}
        for topic in sorted({tp.topic for tp in assigned}):
            stored[topic] = await until_it_works(
                "reading PostgreSQL's offsets", lambda t=topic: asyncio.to_thread(self._stored_offsets, t), retry_if=database_unavailable
            )
        ends = await until_it_works("reading end offsets", lambda: consumer.end_offsets(list(assigned)), retry_if=broker_unavailable)
        for tp in sorted(assigned):
            committed = await until_it_works("reading a committed offset", lambda tp=tp: consumer.committed(tp), retry_if=broker_unavailable)
            floor = self._floor(tp, committed=committed, stored=stored[tp.topic].get(tp.partition), end=ends[tp])
            if floor is not None:
                self.floors[(tp.topic, tp.partition)] = floor
                consumer.seek(tp, floor)

    def _floor(self, tp: TopicPartition, *, committed: int | None, stored: int | None, end: int) -> int | None:
        """Where the partition must resume, when not where Kafka would resume it."""
        where = f"{tp.topic}[{tp.partition}]"
        if stored is not None and stored > end:
            log.error("PostgreSQL's offset %d for %s is past the partition's end %d (was the topic recreated?); not using it", stored, where, end)
            return None
        floor = stored if stored is not None else 0  # nothing stored: nothing was processed
        if committed is None:
            if stored is None:
                return None  # a new partition: auto_offset_reset decides
            log.info("resuming %s from PostgreSQL's offset %d", where, stored)
            return floor
        if committed <= floor:
            return None
        log.error(
            "Kafka's committed offset %d for %s is ahead of PostgreSQL's %d: records in between were never applied; "
            "ignoring Kafka's and resuming from PostgreSQL's (check who commits offsets for group %r)",
            committed, where, floor, self.consumer_group,
        )
        return floor

    def _stored_offsets(self, topic: str) -> dict[int, int]:
        with PostgresUnitOfWork(self.engine) as uow:
            return uow.load_offsets(consumer_group=self.consumer_group, topic=topic)


class Processor:
    """Owns the broker, the database engine and the batch handler."""

    def __init__(self, *, settings: ProcessorSettings, tracer_provider: TracerProvider | None = None) -> None:
        self.settings = settings
        # Spans per batch and per traced request (tracing.py); None: not traced, no cost.
        self.tracing = BatchTracing(tracer_provider=tracer_provider, topic=settings.requests_topic) if tracer_provider else None
        read_past_undecodable_header_keys()
        self.verifier = settings.verifier()  # the tenant wall; refuses to start without its master secret
        # No pre-ping (a round trip per batch): a connection that died with its server fails
        # its batch's first statement, which SQLAlchemy invalidates and `database_unavailable`
        # waits out; the batch runs again on a new connection.
        self.engine = sa.create_engine(settings.database_url, pool_size=settings.db_pool_size)
        # What the service applies each batch through (processor/service/unit_of_work.py).
        self.unit_of_work = functools.partial(PostgresUnitOfWork, self.engine)
        # FastStream runs the consumer side: the group, batches, acks and graceful shutdown.
        # Results go out through `self.producer`, a batch at a time (see `publish`).
        # FastStream logs "Received" and "Processed" for every batch at the broker's log level:
        # DEBUG keeps them (and their context building) off the hot path at the default INFO.
        self.broker = KafkaBroker(
            settings.bootstrap_servers,
            security=settings.kafka.faststream_security(),
            graceful_timeout=30.0,
            client_id="cloudwallet-processor",
            log_level=logging.DEBUG,
        )
        self.producer: AIOKafkaProducer | None = None
        self.reply_targets: ReplyTargets | None = None
        # Stage 2: publishing and Kafka offsets, overlapping the next batch's stage 1.
        self.results = ResultsStage(publish=self.publish, commit_offsets=self.commit_offsets)
        self.stopping = False
        self.listener = ResumeFromDatabase(
            engine=self.engine, consumer_group=settings.consumer_group, consumer=lambda: self.subscriber.consumer, drain=self.drain
        )
        self.subscriber = self.broker.subscriber(
            settings.requests_topic,
            group_id=settings.consumer_group,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_linger_ms,
            auto_offset_reset="earliest",
            # Offsets are committed by stage 2 after the batch's results are out (commit_offsets);
            # the handler rewinds a batch it could not finish (FastStream's nack).
            ack_policy=AckPolicy.MANUAL,
            listener=self.listener,
            max_partition_fetch_bytes=max(settings.max_request_bytes * 2, 1_048_576),
            # The handler reads the raw records (the service decodes them, one at a time):
            # FastStream's own parsing would decode every header of the batch and fail it on
            # one that is not UTF-8; its decoding would be thrown away.
            parser=lambda records: raw_batch_message(records, consumer=self.subscriber.consumer),
            decoder=lambda message: message.body,
        )
        self.subscriber(self.handle_batch)
        # Holds past their expiry on idle wallets get a hold.expire in the log (hold_sweep.py).
        self.hold_sweep = HoldSweep(
            engine=self.engine, producer=lambda: self.producer, requests_topic=settings.requests_topic, signing_key=self.verifier.ledger_key(),
            every_seconds=settings.hold_sweep_seconds, limit=settings.hold_sweep_limit, owned_partitions=self._owned_partitions,
        )  # fmt: skip
        # Liveness, readiness and /metrics on their own port (health.py), when one is set.
        self.batch_running_since: float | None = None
        self.warned_create_time = False
        metrics.BATCHES_IN_FLIGHT.set_function(lambda: self.results.open_batches)
        readiness = Readiness(
            # Its own one connection, with a connect timeout: probes of a hung database must not
            # take the batches' pool (a timed-out SELECT's thread keeps its connection a while).
            engine=sa.create_engine(settings.database_url, pool_size=1, max_overflow=0, connect_args={"connect_timeout": 2}), broker_connected=lambda: self.producer is not None and self.subscriber.consumer is not None,
            broker_answers=lambda: self.producer.client.fetch_all_metadata(),  # type: ignore[union-attr] # only once broker_connected
            partitions_assigned=self._partitions_assigned, batch_running_since=lambda: self.batch_running_since,
            stuck_after_seconds=settings.stuck_batch_seconds,
        )  # fmt: skip
        self.health = HealthServer(readiness=readiness, host=settings.health_host, port=settings.health_port) if settings.health_port else None

    def _partitions_assigned(self) -> int:
        return len(self._owned_partitions())

    def _owned_partitions(self) -> set[int]:
        """The requests topic's partitions assigned to this processor now."""
        consumer = self.subscriber.consumer
        return set() if consumer is None else {tp.partition for tp in consumer.assignment() if tp.topic == self.settings.requests_topic}

    async def handle_batch(self, body: Any, message: KafkaMessage) -> None:
        """Stage 1: apply and commit the batch to PostgreSQL, then hand it to stage 2 and return
        (FastStream polls the next batch while this one's results go out)."""
        records = [source_record(r) for r in message.raw_message]
        if records[0].log_time is None and not self.warned_create_time:
            # A requests topic made before LogAppendTime was set (ensure_topics sets it only on
            # topics it creates): expiry falls back to the batch clock, which a replay does not repeat.
            self.warned_create_time = True
            log.warning(
                "%s carries producer CreateTime timestamps: hold expiry uses the processor's clock instead of log time; set the topic's "
                "message.timestamp.type=LogAppendTime (kafka-configs --alter --entity-type topics --add-config message.timestamp.type=LogAppendTime)",
                records[0].topic,
            )
        await self.listener.settled.wait()
        if self.listener.floors:
            records = [r for r in records if not self.listener.already_processed(r)]
        if not records:
            return
        if self.stopping:
            # Neither applied nor committed anywhere: they come again after the restart.
            return
        self.results.begin()
        metrics.BATCH_RECORDS.observe(len(records))
        self.batch_running_since = started = time.monotonic()
        trace = self.tracing.begin(records) if self.tracing is not None else None
        try:
            report = await until_it_works(
                "committing the batch to PostgreSQL",
                lambda: asyncio.to_thread(
                    process_batch,
                    unit_of_work=self.unit_of_work,
                    records=records,
                    consumer_group=self.settings.consumer_group,
                    max_request_bytes=self.settings.max_request_bytes,
                    verifier=self.verifier,
                ),
                retry_if=database_unavailable,
            )
        except BaseException as error:
            self.results.abandon()
            if trace is not None:
                trace.end(error=error)
            await message.nack()  # back to the batch's first offsets: it comes again
            raise
        finally:
            self.batch_running_since = None
        applied = time.monotonic()
        metrics.BATCH_SECONDS.labels(stage="apply_and_commit").observe(applied - started)
        metrics.time_report(report)
        if trace is not None:
            trace.applied(report, started=started, ended=applied)
        offsets = next_offsets(records)
        self._measure_lag(offsets)
        await self.results.hand_over(CommittedBatch(report=report, offsets=offsets, trace=trace))

    def _measure_lag(self, offsets: Offsets) -> None:
        """Records behind in each partition of the batch: the broker's last known high watermark
        (aiokafka keeps it from the fetches) minus the batch's next offset."""
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()  # highwater() asserts on a partition revoked meanwhile
        lags = []
        for (topic, partition), next_offset in offsets.items():
            tp = TopicPartition(topic, partition)
            highwater = consumer.highwater(tp) if tp in assigned else None
            if highwater is not None:
                lags.append((partition, highwater - next_offset))
        metrics.set_lag(lags)

    async def commit_offsets(self, batch: CommittedBatch) -> None:
        """Stage 2's last step: Kafka's offsets, after the batch's results are out (and the end of
        the batch's trace)."""
        started = time.monotonic()
        await self._commit_offsets(batch.offsets)
        if batch.trace is not None:
            batch.trace.stage("commit offsets", started=started, ended=time.monotonic())
            batch.trace.end()

    async def _commit_offsets(self, offsets: Offsets) -> None:
        """A commit that fails only leaves Kafka's offset behind PostgreSQL's: whoever resumes the
        partition replays the records in between and answers them from what PostgreSQL stored."""
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        owned = {tp: offset for (topic, partition), offset in offsets.items() if (tp := TopicPartition(topic, partition)) in assigned}
        if not owned:
            return
        started = time.monotonic()
        try:
            await consumer.commit(owned)
            metrics.BATCH_SECONDS.labels(stage="kafka_commit").observe(time.monotonic() - started)
        except (CommitFailedError, IllegalStateError) as error:
            log.info("offsets not committed to Kafka (%s): the partitions moved; their next owner resumes from PostgreSQL's", type(error).__name__)
        except Exception as error:  # noqa: BLE001 - harmless: the next commit covers them, a replay answers from PostgreSQL
            log.warning("offsets not committed to Kafka (%s: %s); the next batch's commit covers them", type(error).__name__, error)

    async def drain(self) -> None:
        """Wait (up to REVOKE_DRAIN_S) until every batch handed over is published and committed."""
        if not await self.results.idle(timeout=REVOKE_DRAIN_S):
            log.warning("batches still publishing after %.0fs; their partitions' next owner replays them from Kafka's offsets", REVOKE_DRAIN_S)

    async def publish(self, batch: CommittedBatch) -> None:
        """Every result and dead letter of the batch, then wait until the broker has them all
        (one aiokafka batch per partition: processor/stream/publishing.py)."""
        assert self.producer is not None and self.reply_targets is not None, "the processor has not started"
        started = time.monotonic()
        await self._publish_report(batch.report, trace=batch.trace)
        published = time.monotonic()
        metrics.BATCH_SECONDS.labels(stage="publish").observe(published - started)
        metrics.count_report(batch.report)
        if batch.trace is not None:
            batch.trace.stage("publish results", started=started, ended=published)
            batch.trace.published(batch.report)

    async def _publish_report(self, report: BatchReport, *, trace: BatchTrace | None) -> None:
        assert self.producer is not None and self.reply_targets is not None, "the processor has not started"  # for the type checker
        outgoing = await self._outgoing(report, trace=trace)
        try:
            await publish_records(self.producer, [item.message for item in outgoing])
        except KafkaError as error:
            if isinstance(error, UnknownTopicOrPartitionError):  # a reply_to topic deleted since it was looked up
                self.reply_targets.forget(item.message[0] for item in outgoing)
            if broker_unavailable(error):
                raise
            log.error("the broker refused part of a batch for good (%s); publishing it message by message", type(error).__name__)
            for item in outgoing:
                await self._publish_or_degrade(item)

    async def _outgoing(self, report: BatchReport, *, trace: BatchTrace | None) -> list[Outgoing]:
        results_topic = self.settings.results_topic
        trace_of = trace.headers_for if trace is not None else _untraced
        # An empty or absent reply_to names no topic.
        wanted = [(reply.record.header_bytes(REPLY_TO_HEADER) or None) if reply.honours_reply_to else None for reply in report.replies]
        named = [raw for raw in wanted if raw is not None]
        refusals = await self.reply_targets.refusals(named) if named else {}  # type: ignore[union-attr]
        outgoing: list[Outgoing] = []
        for reply, raw in zip(report.replies, wanted, strict=True):
            headers = trace_of(reply.record)
            if raw is None:
                outgoing.append(result_message(reply, topic=results_topic, trace=headers))
            elif raw in refusals:
                outgoing.append(result_message(reply, topic=results_topic, reply_to_error=refusals[raw], trace=headers))
            else:
                outgoing.append(result_message(reply, topic=raw.decode(), trace=headers))
        for letter in report.dead_letters:
            outgoing.append(self._dead_letter(letter, trace=trace_of(letter.record)))
        return outgoing

    def _dead_letter(self, letter: DeadLetter, *, minimal: bool = False, trace: tuple[Header, ...] = ()) -> Outgoing:
        return dead_letter_message(
            letter, topic=self.settings.dlq_topic, max_value_bytes=self.settings.max_request_bytes, minimal=minimal, trace=trace
        )

    async def _publish_or_degrade(self, item: Outgoing) -> None:
        """Publish one message; if the broker refuses it for good, publish the next best thing."""
        assert self.producer is not None
        while True:
            try:
                await publish_records(self.producer, [item.message])
                return
            except KafkaError as error:
                if broker_unavailable(error):
                    raise
                degraded = self._degraded(item, reason=f"{type(error).__name__}: {error}")
                if degraded is None:
                    raise
                log.error("the broker refused a message for %s (%s); publishing %s instead", item.message[0], type(error).__name__, degraded.message[0])
                item = degraded

    def _degraded(self, item: Outgoing, *, reason: str) -> Outgoing | None:
        topic = item.message[0]
        if item.reply is not None and topic != self.settings.results_topic:
            why = self.reply_targets.refuse(topic, f"refused the result: {reason}")  # type: ignore[union-attr]
            return result_message(item.reply, topic=self.settings.results_topic, reply_to_error=why, trace=item.trace)
        if item.reply is not None:
            return self._dead_letter(DeadLetter(record=item.reply.record, reason=f"the result could not be published: {reason}"), trace=item.trace)
        if item.letter is not None and not item.minimal:
            letter = DeadLetter(record=item.letter.record, reason=f"{item.letter.reason}; the full letter was refused: {reason}")
            return self._dead_letter(letter, minimal=True, trace=item.trace)
        return None

    async def on_startup(self) -> None:
        if self.settings.create_topics:
            await ensure_topics(settings=self.settings)
        self.producer = AIOKafkaProducer(
            **self.settings.kafka.options(),
            client_id="cloudwallet-processor-results",
            acks="all",
            enable_idempotence=True,
            # No linger: publish_records hands over whole record batches, one per partition;
            # waiting for more would only add latency to every batch.
            linger_ms=0,
            # A batch's results go out as one record batch per partition: room for a whole one,
            # and for a dead letter as large as any record the broker accepted.
            max_batch_size=512 * 1024,
            max_request_size=MAX_PUBLISH_BYTES,
        )
        await self.producer.start()
        self.reply_targets = ReplyTargets(producer=self.producer, forbidden=(self.settings.requests_topic, self.settings.dlq_topic))
        self.results.start()
        self.hold_sweep.start()
        if self.health is not None:
            self.health.start()

    async def after_startup(self) -> None:
        tune_gc()

    async def on_shutdown(self) -> None:
        # Before the consumer stops: the batches applied go out and their offsets are committed
        # while the consumer can still commit; batches polled from now on are left for later.
        self.stopping = True
        await self.hold_sweep.stop()
        await self.drain()

    async def after_shutdown(self) -> None:
        # After the broker stopped, which waited for the batch in flight to finish.
        await self.results.stop()
        if self.health is not None:
            await self.health.stop()
        if self.producer is not None:
            await self.producer.stop()
        self.engine.dispose()

    def app(self) -> FastStream:
        return FastStream(
            self.broker,
            on_startup=[self.on_startup],
            after_startup=[self.after_startup],
            on_shutdown=[self.on_shutdown],
            after_shutdown=[self.after_shutdown],
        )

