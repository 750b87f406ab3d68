"""Sending records and remembering where each one landed, in as little memory as possible.

Per record only (partition, offset, category, detail) is kept, in typed arrays with the category
and detail strings interned: 100,000 records cost about 2 MB. The broker's RecordMetadata is the
only truth about where a record is; sends are awaited a window at a time, never one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncio
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from fuzz.context import Outgoing, RawName

if TYPE_CHECKING:
    from schemas.signing import SigningKey


@dataclass(kw_only=True)
class SentLog:
    """Every record the broker accepted, and every one it (or the client) refused."""

    categories: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    partition: array = field(default_factory=lambda: array("H"))
    offset: array = field(default_factory=lambda: array("q"))
    category: array = field(default_factory=lambda: array("B"))
    detail: array = field(default_factory=lambda: array("I"))
    refused: Counter[str] = field(default_factory=Counter)
    refused_samples: list[dict[str, str]] = field(default_factory=list)
    _index: dict[int, dict[str, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offset)

    def _intern(self, table: list[str], text: str) -> int:
        """The index of `text` in `table` (categories or details), added on first sight."""
        index = self._index.setdefault(id(table), {})
        found = index.get(text)
        if found is None:
            found = index[text] = len(table)
            table.append(text)
        return found

    def add(self, *, partition: int, offset: int, category: str, detail: str) -> None:
        self.partition.append(partition)
        self.offset.append(offset)
        self.category.append(self._intern(self.categories, category))
        self.detail.append(self._intern(self.details, detail))

    def refuse(self, *, category: str, detail: str, error: BaseException) -> None:
        self.refused[category] += 1
        if len(self.refused_samples) < 20:
            self.refused_samples.append({"category": category, "detail": detail, "error": f"{type(error).__name__}: {error}"[:300]})

    def rows(self) -> Iterable[tuple[int, int, str, str]]:
        """(partition, offset, category, detail) of every record sent."""
        for i in range(len(self.offset)):
            yield self.partition[i], self.offset[i], self.categories[self.category[i]], self.details[self.detail[i]]


@dataclass(kw_only=True)
class SendStats:
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    bytes_sent: int = 0

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


async def send_all(
    producer: AIOKafkaProducer,
    *,
    topic: str,
    records: Iterable[Outgoing],
    log: SentLog,
    window: int,
    signing_key: SigningKey | None = None,
    on_window: Callable[[], None] = lambda: None,
) -> SendStats:
    """Send every record, at most `window` in flight; log where each landed or why it did not."""
    stats = SendStats()
    pending: list[tuple[Outgoing, asyncio.Future]] = []
    for record in records:
        try:
            future = await _send_one(producer, topic=topic, record=record, signing_key=signing_key)
        except Exception as error:  # refused before it left (size, header types): not sent
            log.refuse(category=record.category, detail=record.detail, error=error)
            continue
        stats.bytes_sent += len(record.value or b"") + len(record.key or b"")
        pending.append((record, future))
        if len(pending) >= window:
            # The older half, in bulk; the newer half stays in flight meanwhile.
            half = window // 2 or 1
            await _settle(pending[:half], log=log)
            del pending[:half]
            on_window()
    await _settle(pending, log=log)
    stats.finished = time.monotonic()
    return stats


async def _send_one(producer: AIOKafkaProducer, *, topic: str, record: Outgoing, signing_key: SigningKey | None) -> asyncio.Future:
    """`producer.send`, except for what aiokafka's `send` cannot express but Kafka (and other
    clients) allow: neither key nor value, or a header name that is not UTF-8. Such a record goes
    as a batch of its own, built by aiokafka's pure-Python builder (it encodes header names with
    `str.encode`, which RawName overrides; the C builder would not). Every record with a value
    is signed with `signing_key` after its own headers: the hostile envelope gets past the tenant
    wall to the parts it tests (fuzz/signatures.py tests the wall itself)."""
    headers = [*record.headers, *(signing_key.headers(record.value) if signing_key is not None and record.value is not None and not record.unsigned else ())]
    raw_names = any(isinstance(name, RawName) for name, _value in record.headers)
    if not raw_names and (record.key is not None or record.value is not None):
        return await producer.send(topic, value=record.value, key=record.key, headers=headers, partition=record.partition)
    assert record.partition is not None, "a record sent as its own batch names its partition"
    batch = producer.create_batch()
    batch._builder = _DefaultRecordBatchBuilderPy(  # private, on purpose: see the docstring
        magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=16_384
    )
    batch.append(timestamp=None, key=record.key, value=record.value, headers=headers)
    return await producer.send_batch(batch, topic, partition=record.partition)


async def _settle(pending: list[tuple[Outgoing, asyncio.Future]], *, log: SentLog) -> None:
    outcomes = await asyncio.gather(*(future for _record, future in pending), return_exceptions=True)
    for (record, _future), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.refuse(category=record.category, detail=record.detail, error=outcome)
        else:
            log.add(partition=outcome.partition, offset=outcome.offset, category=record.category, detail=record.detail)
