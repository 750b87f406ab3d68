"""Reading the results topic: how every client of ours gets the answers to what it published.

The processor answers each request on the results topic under the key
`schemas.results.result_key(project_id=..., reference_id=...)`. A client that waits for answers
reads that topic from its end (so it sees only answers to what it publishes from now on), keeps
what it is waiting for under each key, and hands each result to the request that waits for it;
results nobody here waits for (other clients', an earlier run's) are skipped. `ResultsFollower`
is that one implementation: `WalletClient` waits on it with futures, `processor.ingest`'s
pipeline with a window of thousands of requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processor.client.connection import KafkaConnection
from schemas.results import DUPLICATE_HEADER, Result, duplicate_result

__all__ = ["Pending", "ResultsClient", "ResultsFollower", "follow_from_end", "header", "read_result", "result_status"]

Tag = TypeVar("Tag")

METADATA_ATTEMPTS = 20  # about 5 s for a new results topic to show in the metadata
POLL_MS = 100  # how long one poll of the results topic waits for records
POLL_RECORDS = 10_000  # records taken per poll at most


async def follow_from_end(consumer: AIOKafkaConsumer, *, topic: str) -> None:
    """Assign every partition of the results topic to a started consumer, positioned at the end:
    only results published from now on are read. Call it before publishing requests."""
    partitions = consumer.partitions_for_topic(topic)
    for _ in range(METADATA_ATTEMPTS):
        if partitions:
            break
        # A topic just created takes a moment to show; aiokafka has no public way to refresh
        # a consumer's metadata for one topic.
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.25)
    if not partitions:
        raise RuntimeError(f"results topic {topic!r} does not exist: start the processor first (cloudwallet run)")
    assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assignment)
    await consumer.seek_to_end(*assignment)
    for tp in assignment:
        await consumer.position(tp)


def header(record: Any, name: str) -> bytes | None:
    """The first header `name` of a consumed record, as sent (None when absent)."""
    for key, value in record.headers or ():
        if key == name:
            return value
    return None


def read_result(record: Any) -> Result:
    """The Result a results-topic record answers its request with: the record's value, or for
    a repeat of a spent reference (a `duplicate` header) DuplicateReferenceId with that value
    as `original`. Raises pydantic's ValidationError (or ValueError) for what it cannot read."""
    result = Result.model_validate_json(record.value or b"")
    kind = header(record, DUPLICATE_HEADER)
    if kind is None:
        return result
    request_type = (header(record, "request_type") or b"").decode("utf-8", "replace")
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp and record.timestamp > 0 else datetime.now(UTC)
    return duplicate_result(result, kind=kind.decode("utf-8", "replace"), request_type=request_type, processed_at=at)


def result_status(value: bytes) -> tuple[str, str | None]:
    """(status, error code) of a result's JSON, cheaply: a bulk loader counts thousands a second.

    Results are written by pydantic in field order (reference_id, project_id, type, status,
    error, ...), and a JSON string can never contain an unescaped `"status":"`, so the first
    match is the result's own status. Anything unexpected falls back to a full parse.
    """
    try:
        start = value.index(b'"status":"') + 10
        status = value[start : value.index(b'"', start)].decode()
        if status == "Completed":
            return status, None
        start = value.index(b'"error":{"code":"', start) + 17
        return status, value[start : value.index(b'"', start)].decode()
    except ValueError:
        data = json.loads(value)
        return str(data.get("status")), (data.get("error") or {}).get("code")


@dataclass(slots=True)
class Pending(Generic[Tag]):
    """A request waiting for its result: the caller's tag for it, and when it was registered."""

    tag: Tag
    sent_at: float


class ResultsFollower(Generic[Tag]):
    """Follows a results topic from its end and resolves the requests pending under each key.

    `expect(key, tag=...)` before publishing; each result under `key` then calls
    `on_result(tag, waited_s, record)`: for the oldest request pending under the key (each
    published request gets its own answer, a repeat of a reference its DuplicateReferenceId),
    or with `shared=True` for every request pending under it (callers that wait on a reference,
    however many times they asked). A failure reading the topic is raised to whoever waits.
    """

    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        topic: str,
        on_result: Callable[[Tag, float, Any], None],
        shared: bool = False,
        client_id: str | None = None,
        fetch_max_wait_ms: int = 500,
        max_partition_fetch_bytes: int = 1_048_576,
    ) -> None:
        self.topic = topic
        self.on_result = on_result
        self.shared = shared
        named = {"client_id": client_id} if client_id else {}
        self._consumer = AIOKafkaConsumer(
            **kafka.options(),
            **named,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
        )
        # One Pending per key almost always; a list only while a key is pending more than once.
        self._pending: dict[str, Pending[Tag] | list[Pending[Tag]]] = {}
        self.count = 0  # requests pending
        self.answered = 0  # results matched to a pending request
        self.last_result_at = time.monotonic()
        self._changed = asyncio.Event()  # set whenever fewer requests are pending
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Listen from the end of the topic; return once positioned, before anything is published."""
        await self._consumer.start()
        try:
            await follow_from_end(self._consumer, topic=self.topic)
        except RuntimeError:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._follow(), name=f"results-{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already surfaced to the waiters
                pass
            self._task = None
        await self._consumer.stop()

    def expect(self, key: str, *, tag: Tag) -> None:
        """Wait for a result under `key` (register before publishing, or the result may pass by)."""
        entry = Pending(tag, time.monotonic())
        current = self._pending.get(key)
        if current is None:
            self._pending[key] = entry
        elif isinstance(current, list):
            current.append(entry)
        else:
            self._pending[key] = [current, entry]
        self.count += 1

    def take(self, key: str) -> Pending[Tag] | None:
        """Stop waiting for the oldest request pending under `key` (its publish failed)."""
        current = self._pending.get(key)
        if current is None:
            return None
        if isinstance(current, list):
            found = current.pop(0)
            if len(current) == 1:
                self._pending[key] = current[0]
        else:
            found = current
            del self._pending[key]
        self._settled(1)
        return found

    def forget(self, key: str, *, tag: Tag) -> None:
        """Stop waiting for the request pending under `key` with this tag (it timed out)."""
        current = self._pending.get(key)
        entries = current if isinstance(current, list) else [current] if current is not None else []
        kept = [entry for entry in entries if entry.tag is not tag]
        if len(kept) == len(entries):
            return
        if not kept:
            del self._pending[key]
        else:
            self._pending[key] = kept if len(kept) > 1 else kept[0]
        self._settled(len(entries) - len(kept))

    def take_all(self) -> list[Tag]:
        """Stop waiting for everything still pending; the tags of what never got a result."""
        tags = [entry.tag for current in self._pending.values() for entry in (current if isinstance(current, list) else [current])]
        self._pending.clear()
        self._settled(self.count)
        return tags

    def check(self) -> None:
        """Raise what stopped the topic being read, if anything did: waiting would be forever."""
        if self._failure is not None:
            raise RuntimeError(f"reading results failed: {self._failure!r}") from self._failure

    async def wait_below(self, limit: int) -> None:
        """Until fewer than `limit` requests are pending (a window of requests in flight)."""
        while self.count >= limit:
            self.check()
            self._changed.clear()
            await self._changed.wait()
        self.check()

    async def wait_empty(self, *, idle_timeout: float, tick: Callable[[], None] | None = None) -> None:
        """Until nothing is pending, or no result came for `idle_timeout` s; `tick` runs about
        every half second meanwhile (a progress display)."""
        self.last_result_at = max(self.last_result_at, time.monotonic())
        while self.count:
            self.check()
            if tick is not None:
                tick()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)
            except TimeoutError:
                if time.monotonic() - self.last_result_at > idle_timeout:
                    break
        self.check()

    def _settled(self, count: int) -> None:
        self.count -= count
        self._changed.set()

    def _resolve(self, record: Any, *, now: float) -> None:
        key = record.key.decode() if record.key else ""
        if self.shared:
            current = self._pending.pop(key, None)
            entries = current if isinstance(current, list) else [current] if current is not None else []
            self._settled(len(entries))
        else:
            found = self.take(key)
            entries = [found] if found is not None else []
        for entry in entries:
            self.answered += 1
            self.last_result_at = now
            self.on_result(entry.tag, now - entry.sent_at, record)

    async def _follow(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=POLL_RECORDS)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        self._resolve(record, now=now)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - surfaced to whoever waits
            self._failure = error
            self._changed.set()
            raise


class ResultsClient:
    """What publishes requests and waits for their results (`WalletClient`, ingest's `Ingestor`):
    a producer and a `ResultsFollower` started and stopped together, the follower listening
    before anything can be published, so that no result passes by unseen."""

    _producer: AIOKafkaProducer
    _results: ResultsFollower[Any]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()
        try:
            await self._results.start()
        except RuntimeError:
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        await self._results.stop()
        await self._producer.stop()
