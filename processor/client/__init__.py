"""The async client: publish requests keyed correctly, await their results by reference ID.

    settings = load(ProcessorSettings)   # from processor.settings: Kafka login, signing key
    async with WalletClient(kafka=settings.kafka, signing_key=settings.client_signing_key) as client:
        result = await client.submit({"type": "project.create", "reference_id": "r-1", "name": "Demo"})

Retrying is safe: send the same request with the same reference ID again; a request that was
already applied answers DuplicateReferenceId with the original result, never a second effect.
(On the topic a repeat is the original's result under a `duplicate` header, so that the
compacted topic keeps the real answer; `read_result` turns it back into DuplicateReferenceId.)
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from processor.client.connection import KafkaConnection
from schemas.requests import request_project_id
from schemas.signing import SigningKey
from schemas.requests import RequestAdapter, RequestModel, partition_key
from schemas.results import DUPLICATE_HEADER, Result, duplicate_result, result_key

__all__ = ["ResultTimeout", "WalletClient", "follow_from_end", "header", "read_result", "result_key"]


METADATA_ATTEMPTS = 20  # about 5 s for a new results topic to show in the metadata


class ResultTimeout(TimeoutError):
    """No result arrived in time. The request may still be applied: retry with the same reference ID."""


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


def _as_request(request: RequestModel | Mapping[str, Any]) -> RequestModel:
    return request if not isinstance(request, Mapping) else RequestAdapter.validate_python(dict(request))


class WalletClient:
    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        signing_key: SigningKey | None = None,
        requests_topic: str = "wallet.requests",
        results_topic: str = "wallet.results",
        compression_type: str | None = None,
        linger_ms: int = 5,
    ) -> None:
        self.requests_topic = requests_topic
        self.results_topic = results_topic
        self.signing_key = signing_key  # signs every request (schemas/signing.py)
        self._producer = AIOKafkaProducer(
            **kafka.options(),
            acks="all",
            enable_idempotence=True,
            compression_type=compression_type,
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
        )
        self._consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
        self._waiters: dict[str, list[asyncio.Future[Result]]] = {}
        self._results_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WalletClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        try:
            await follow_from_end(self._consumer, topic=self.results_topic)
        except RuntimeError:
            await self._consumer.stop()
            await self._producer.stop()
            raise
        self._results_task = asyncio.create_task(self._dispatch_results())

    async def stop(self) -> None:
        if self._results_task is not None:
            self._results_task.cancel()
            try:
                await self._results_task
            except (asyncio.CancelledError, Exception):
                pass
        await self._consumer.stop()
        await self._producer.stop()

    async def _dispatch_results(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    waiters = self._waiters.pop(record.key.decode() if record.key else "", None)
                    if not waiters:
                        continue
                    try:
                        result = read_result(record)
                    except (ValidationError, ValueError) as error:  # a result this client version cannot read
                        for waiter in waiters:
                            if not waiter.done():
                                waiter.set_exception(error)
                        continue
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(result)

    async def publish(
        self,
        request: RequestModel | Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> RequestModel:
        """Publish one request keyed by its wallet (or customer, asset, project); do not wait."""
        model = _as_request(request)
        headers = []
        if correlation_id:
            headers.append(("correlation_id", correlation_id.encode()))
        if reply_to:
            headers.append(("reply_to", reply_to.encode()))
        value = model.model_dump_json(exclude_none=True).encode()
        if self.signing_key is not None:
            headers.extend(self.signing_key.headers(value))
        await self._producer.send(self.requests_topic, value=value, key=partition_key(model).encode(), headers=headers or None)
        return model

    async def publish_many(self, requests: Iterable[RequestModel | Mapping[str, Any]]) -> int:
        """Publish many requests without awaiting results; returns how many were sent."""
        count = 0
        for request in requests:
            await self.publish(request)
            count += 1
        await self._producer.flush()
        return count

    def expect(self, *, project_id: str | None, reference_id: str) -> asyncio.Future[Result]:
        """A future for the result with this key; register it before publishing."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(result_key(project_id=project_id, reference_id=reference_id), []).append(future)
        return future

    def forget(self, *, project_id: str | None, reference_id: str, future: asyncio.Future[Result]) -> None:
        """Stop waiting for a result (after a timeout or a failed publish)."""
        key = result_key(project_id=project_id, reference_id=reference_id)
        waiters = self._waiters.get(key)
        if waiters is not None:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                del self._waiters[key]

    async def submit(self, request: RequestModel | Mapping[str, Any], *, timeout: float = 30.0) -> Result:
        """Publish a request and wait for its result."""
        model = _as_request(request)
        project_id = request_project_id(model)
        future = self.expect(project_id=project_id, reference_id=model.reference_id)
        try:
            await self.publish(model, correlation_id=str(uuid.uuid4()))
            await self._producer.flush()
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ResultTimeout(
                f"no result for reference {model.reference_id!r} within {timeout}s; it may still be applied - "
                "retry with the same reference ID"
            ) from None
        finally:
            self.forget(project_id=project_id, reference_id=model.reference_id, future=future)
