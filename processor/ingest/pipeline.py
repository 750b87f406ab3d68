"""The ingest pipeline: publish requests with a bounded window in flight, match their results.

Bulk loading (and the benchmark, which drives its traffic through the same pipeline) wants the
broker busy without holding a whole file's requests in memory: at most `window` requests wait
for a result at any time, and results come back through the client library's
`ResultsFollower`, the same matching every client of ours uses.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer

from processor.client.connection import KafkaConnection
from processor.client.results_topic import ResultsClient, ResultsFollower, header
from processor.ingest.reading import Outgoing
from schemas.results import DUPLICATE_HEADER
from schemas.signing import SigningKey

__all__ = ["Ingestor", "usable_compression"]


def usable_compression(wanted: str | None) -> str | None:
    """The producer's compression: `wanted`, or None (uncompressed) when its codec library is
    missing — a bulk load should go through slower rather than not at all."""
    if wanted in (None, "", "none"):
        return None
    if wanted == "gzip":
        return wanted
    from aiokafka import codec

    available = {"lz4": codec.has_lz4(), "zstd": codec.has_zstd(), "snappy": codec.has_snappy()}
    if wanted not in available:
        raise ValueError(f"unknown compression {wanted!r}: lz4, zstd, snappy, gzip or none")
    if not available[wanted]:
        print(f"ingest: {wanted} compression needs the 'cramjam' package; publishing uncompressed", file=sys.stderr)
        return None
    return wanted


class Ingestor(ResultsClient):
    """Publish requests with a bounded in-flight window; match their results by key.

    `on_result(tag, latency_s, value, duplicate)` runs for every matched result (`duplicate`:
    the record answers a repeat of a spent reference, and `value` is the original's result) and
    `on_lost(tag, reason)` for a request the broker would not take (after the producer's
    retries). Results for keys not in flight (another client's, an earlier run's) are ignored.
    `start` (or `async with`) listens on the results topic before the first publish.
    """

    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        requests_topic: str,
        results_topic: str,
        on_result: Callable[[Any, float, bytes, bool], None],
        on_lost: Callable[[Any, str], None] | None = None,
        window: int = 10_000,
        compression: str | None = "lz4",
        linger_ms: int = 5,
        max_batch_size: int = 512 * 1024,
        client_id: str = "cloudwallet-ingest",
        signing_key: SigningKey | None = None,
    ) -> None:
        self.requests_topic = requests_topic
        self.on_result = on_result
        self.on_lost = on_lost
        self.signing_key = signing_key  # signs every request (schemas/signing.py)
        self.window = window
        self.compression = usable_compression(compression)
        self.sent = 0
        self._producer = AIOKafkaProducer(
            **kafka.options(),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=self.compression,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            max_request_size=max(max_batch_size, 1_048_576),
        )
        # One result per published request: a reference sent twice is answered twice.
        self._results: ResultsFollower[Any] = ResultsFollower(
            kafka=kafka,
            topic=results_topic,
            on_result=self._answered,
            client_id=f"{client_id}-results",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1_048_576,
        )

    @property
    def in_flight(self) -> int:
        return self._results.count

    @property
    def answered(self) -> int:
        return self._results.answered

    async def submit(self, item: Outgoing, *, tag: Any = None) -> None:
        """Publish one request once the window has room; its result goes to `on_result` with
        `tag` (default: the item itself)."""
        await self._results.wait_below(self.window)
        self._results.expect(item.result_key, tag=tag if tag is not None else item)
        self.sent += 1
        headers = self.signing_key.headers(item.value) if self.signing_key is not None else None
        delivery = await self._producer.send(self.requests_topic, value=item.value, key=item.key, headers=headers)
        delivery.add_done_callback(partial(self._delivered, key=item.result_key))

    async def flush(self) -> None:
        await self._producer.flush()

    async def drain(self, *, idle_timeout: float, tick: Callable[[], None] | None = None) -> list[Any]:
        """Wait for every in-flight result; give up after `idle_timeout` s without any result.
        `tick` runs about every half second meanwhile (a progress display).

        Returns the tags of the requests still unanswered (and forgets them).
        """
        await self._producer.flush()
        await self._results.wait_empty(idle_timeout=idle_timeout, tick=tick)
        return self._results.take_all()

    def _answered(self, tag: Any, waited_s: float, record: Any) -> None:
        self.on_result(tag, waited_s, record.value or b"", header(record, DUPLICATE_HEADER) is not None)

    def _delivered(self, delivery: asyncio.Future[Any], *, key: str) -> None:
        if delivery.cancelled() or delivery.exception() is None:
            return
        pending = self._results.take(key)
        if pending is not None and self.on_lost is not None:
            self.on_lost(pending.tag, f"not published: {delivery.exception()!r}")
