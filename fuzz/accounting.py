"""Reading the answers back: every result and dead letter names the request record it answers
in its `source_topic`/`source_partition`/`source_offset` headers (the processor's contract).

A tailing consumer reads the results, DLQ and reply_to topics from the beginning while the run
goes on, and marks each request record answered (by a result, a dead letter, or more than once)
with the outcome it got. Per request partition that is one byte of flags and one outcome index per
offset, so 100,000 records cost ~300 KB.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.client.connection import KafkaConnection

from processor.stream.tolerant_records import install as read_past_undecodable_header_keys

RESULT, DEAD_LETTER, REPEATED = 1, 2, 4
FETCH_BYTES = 8 * 1024 * 1024  # a ~2 MB dead letter, and then some
MAX_OFFSET = 100_000_000  # a run's own topic never gets near it


@dataclass(kw_only=True)
class Answers:
    """Which request records (of `requests_topic`) have been answered, and how."""

    requests_topic: str
    flags: dict[int, bytearray] = field(default_factory=dict)
    outcome: dict[int, array] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=lambda: ["-"])
    answers_by_topic: Counter[str] = field(default_factory=Counter)
    unattributed: Counter[str] = field(default_factory=Counter)  # answers naming no request record of ours
    watched: dict[bytes, float | None] = field(default_factory=dict)  # result key -> when it arrived
    answered_records: int = 0
    last_new: float = field(default_factory=time.monotonic)
    _outcome_index: dict[str, int] = field(default_factory=dict)

    def watch(self, key: bytes) -> None:
        self.watched[key] = None

    def state(self, partition: int, offset: int) -> int:
        flags = self.flags.get(partition)
        return flags[offset] if flags is not None and offset < len(flags) else 0

    def outcome_of(self, partition: int, offset: int) -> str:
        codes = self.outcome.get(partition)
        return self.outcomes[codes[offset]] if codes is not None and offset < len(codes) else "-"

    def take(self, record: Any, *, topic: str) -> None:
        """One record read from an answer topic (or the requests topic, as a reply_to target)."""
        headers = {name: value for name, value in record.headers or ()}
        source = _source(headers)
        if source is None or source[0] != self.requests_topic:
            if topic != self.requests_topic:  # on the requests topic, anything without a source is a request
                self.unattributed[topic] += 1
            return
        self.answers_by_topic[topic] += 1
        is_letter = "dlq_reason" in headers
        if not is_letter and record.key in self.watched and self.watched[record.key] is None:
            self.watched[record.key] = time.monotonic()
        outcome = _letter_outcome(headers) if is_letter else _result_outcome(record.value, headers=headers)
        self._mark(partition=source[1], offset=source[2], kind=DEAD_LETTER if is_letter else RESULT, outcome=outcome)

    def _mark(self, *, partition: int, offset: int, kind: int, outcome: str) -> None:
        flags = self.flags.setdefault(partition, bytearray())
        codes = self.outcome.setdefault(partition, array("H"))
        if offset >= len(flags):
            grow = offset - len(flags) + 1 + 4096
            flags.extend(bytes(grow))
            codes.extend(array("H", bytes(2 * grow)))
        if flags[offset]:
            flags[offset] |= kind | REPEATED
            return
        flags[offset] = kind
        codes[offset] = self._intern(outcome)
        self.answered_records += 1
        self.last_new = time.monotonic()

    def _intern(self, outcome: str) -> int:
        found = self._outcome_index.get(outcome)
        if found is None:
            found = self._outcome_index[outcome] = len(self.outcomes)
            self.outcomes.append(outcome)
        return found


def _source(headers: dict[str, bytes | None]) -> tuple[str, int, int] | None:
    """The request record an answer names, if its headers name one plausibly (a bogus offset
    must not make the flags grow without bound)."""
    try:
        topic, partition, offset = headers["source_topic"], headers["source_partition"], headers["source_offset"]
        found = topic.decode("ascii"), int(partition), int(offset)  # type: ignore[union-attr]
    except (KeyError, AttributeError, UnicodeDecodeError, ValueError):
        return None
    return found if 0 <= found[1] < 65_536 and 0 <= found[2] < MAX_OFFSET else None


def _letter_outcome(headers: dict[str, bytes | None]) -> str:
    """`DLQ: <reason>` with numbers and quoted names blanked, so alike reasons count together."""
    reason = (headers.get("dlq_reason") or b"").decode("utf-8", "replace")
    reason = re.sub(r"'[^']*'|\d+", "#", reason.split(":")[0])
    return f"DLQ: {reason[:70]}"


def _result_outcome(value: bytes | None, *, headers: dict[str, bytes | None]) -> str:
    """The status or error code; a repeat of a spent reference carries the original's answer
    and a `duplicate` header saying what the repeat was."""
    try:
        result = json.loads(value or b"")
        error = result.get("error") or {}
        outcome = str(result.get("status")) if result.get("status") == "Completed" else str(error.get("code"))
    except (ValueError, AttributeError):
        outcome = "unreadable result"
    if "duplicate" in headers:
        outcome = f"duplicate {(headers['duplicate'] or b'').decode('utf-8', 'replace')} of {outcome}"
    return outcome + (" (reply_to refused)" if "reply_to_error" in headers else "")


async def partitions_of(consumer: AIOKafkaConsumer, *, topic: str) -> list[TopicPartition]:
    known = consumer.partitions_for_topic(topic)
    if not known:
        await consumer._client.force_metadata_update()  # no public way to refresh for one topic
        known = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(known)]


class Tailer:
    """Reads answer topics from their beginning, for as long as the run lasts.

    The requests topic (a reply_to target) holds the fuzzer's own records, some with header names
    that are not UTF-8, on which aiokafka's strict decoding fails every poll: this process reads
    such batches again leniently (processor/stream/tolerant_records.py, as the processor does).
    """

    def __init__(self, *, kafka: KafkaConnection, answers: Answers) -> None:
        read_past_undecodable_header_keys()
        self.answers = answers
        self.consumer = AIOKafkaConsumer(
            **kafka.options(), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=4 * FETCH_BYTES
        )
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None  # why reading stopped, if it did

    async def start(self, topics: Iterable[str]) -> None:
        await self.consumer.start()
        assignment = [tp for topic in dict.fromkeys(topics) for tp in await partitions_of(self.consumer, topic=topic)]
        self.consumer.assign(assignment)
        await self.consumer.seek_to_beginning(*assignment)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=20_000)
                for tp, records in batches.items():
                    for record in records:
                        self.answers.take(record, topic=tp.topic)
        except Exception as error:  # an answer no client could read: the run must say so, not hang
            self.error = f"reading the answer topics failed: {type(error).__name__}: {error}"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.consumer.stop()


async def read_to_end(*, kafka: KafkaConnection, topics: Iterable[str], answers: Answers) -> None:
    """One pass over whole topics (reply_to targets found to exist only at the end)."""
    consumer = AIOKafkaConsumer(**kafka.options(), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=FETCH_BYTES)
    await consumer.start()
    try:
        assignment = [tp for topic in topics for tp in await partitions_of(consumer, topic=topic)]
        if not assignment:
            return
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        ends = await consumer.end_offsets(assignment)
        while any([await consumer.position(tp) < ends[tp] for tp in assignment]):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    answers.take(record, topic=tp.topic)
    finally:
        await consumer.stop()
