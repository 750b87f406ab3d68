"""The async client: publish requests keyed correctly, await their results by reference ID.

    settings = load(ProcessorSettings)   # from processor.settings: Kafka login, signing key
    async with WalletClient(kafka=settings.kafka, signing_key=settings.client_signing_key) as client:
        result = await client.submit({"type": "project.create", "reference_id": "r-1", "name": "Demo"})

Traced when its caller is: a request published inside a recorded span (OpenTelemetry) gets a
`send` span of its own, whose context travels in the record's `traceparent` header; the
processor's span for the request continues that trace, and the result carries the processor's.

Retrying is safe: send the same request with the same reference ID again; a request that was
already applied answers DuplicateReferenceId with the original result, never a second effect.
(On the topic a repeat is the original's result under a `duplicate` header, so that the
compacted topic keeps the real answer; `read_result` turns it back into DuplicateReferenceId.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import SpanKind, TracerProvider
from pydantic import ValidationError

from processor.client.connection import KafkaConnection
from processor.client.results_topic import ResultsClient, ResultsFollower, follow_from_end, header, read_result, result_status
from processor.client.trace_context import is_tracing, trace_headers
from schemas.requests import RequestAdapter, RequestModel, partition_key, request_project_id
from schemas.results import Result, result_key
from schemas.signing import SigningKey

__all__ = ["ResultTimeout", "WalletClient", "follow_from_end", "header", "read_result", "result_key", "result_status"]


class ResultTimeout(TimeoutError):
    """No result arrived in time. The request may still be applied: retry with the same reference ID."""


def _as_request(request: RequestModel | Mapping[str, Any]) -> RequestModel:
    return request if not isinstance(request, Mapping) else RequestAdapter.validate_python(dict(request))


class WalletClient(ResultsClient):
    """Publishes requests signed and keyed as the contract says, and waits for their results:
    what an application needs to use the ledger without knowing Kafka's details."""

    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        signing_key: SigningKey | None = None,
        requests_topic: str = "wallet.requests",
        results_topic: str = "wallet.results",
        compression_type: str | None = None,
        linger_ms: int = 5,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.requests_topic = requests_topic
        # The global provider by default: a no-op until the application configures OpenTelemetry.
        self._tracer = trace.get_tracer("cloudwallet.client", tracer_provider=tracer_provider)
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
        # Every request pending under a reference takes its result: callers wait on a reference.
        self._results: ResultsFollower[asyncio.Future[Result]] = ResultsFollower(
            kafka=kafka, topic=results_topic, on_result=_settle, shared=True
        )

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
        key = partition_key(model).encode()
        if not is_tracing():
            await self._producer.send(self.requests_topic, value=value, key=key, headers=headers or None)
            return model
        attributes = {"messaging.system": "kafka", "messaging.destination.name": self.requests_topic, "messaging.operation.type": "send",
                      "cloudwallet.request_type": model.type, "cloudwallet.reference_id": model.reference_id}  # fmt: skip
        with self._tracer.start_as_current_span(f"send {self.requests_topic}", kind=SpanKind.PRODUCER, attributes=attributes):
            headers.extend(trace_headers())
            await self._producer.send(self.requests_topic, value=value, key=key, headers=headers)
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
        self._results.expect(result_key(project_id=project_id, reference_id=reference_id), tag=future)
        return future

    def forget(self, *, project_id: str | None, reference_id: str, future: asyncio.Future[Result]) -> None:
        """Stop waiting for a result (after a timeout or a failed publish)."""
        self._results.forget(result_key(project_id=project_id, reference_id=reference_id), tag=future)

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


def _settle(future: asyncio.Future[Result], _waited_s: float, record: Any) -> None:
    """Answer a waiting caller with the result a record carries, or with why it cannot be read
    (a result this client version does not know)."""
    if future.done():
        return
    try:
        future.set_result(read_result(record))
    except (ValidationError, ValueError) as error:
        future.set_exception(error)
