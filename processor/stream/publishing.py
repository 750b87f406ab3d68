"""Publishing many records at once, the cheap way: one aiokafka batch per partition.

`broker.publish` (or aiokafka's `send`) costs tens of microseconds of Python per record: a
command object, middlewares, a size estimate, the partitioner, a future and its callbacks. The
processor publishes a whole batch of results at a time, so it builds the record batches itself:
each record goes to the partition Kafka's default partitioner picks for its key (murmur2, as the
Java client and aiokafka's `send` do, so a key always lands on the same partition whoever wrote
it), appended to one `BatchBuilder` per partition, and each batch is handed to the producer
(acks, idempotence, retries and compression stay the producer's). One future per batch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

Header = tuple[str, bytes]
Message = tuple[str, bytes | None, bytes, Sequence[Header]]  # topic, key, value, headers


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """The default partitioner: murmur2(key) & 0x7fffffff modulo the partition count."""
    if key is None:
        return random.choice(partitions)
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


async def publish_records(producer: AIOKafkaProducer, messages: Iterable[Message]) -> None:
    """Publish `messages` through a started producer and wait until the broker has every one
    (raises the producer's error otherwise). Order is kept per partition."""
    partitions_of: dict[str, list[int]] = {}
    builders: dict[tuple[str, int], object] = {}
    pending: list[asyncio.Future[object]] = []
    for topic, key, value, headers in messages:
        partitions = partitions_of.get(topic)
        if partitions is None:
            partitions = partitions_of[topic] = sorted(await producer.partitions_for(topic))
        where = (topic, partition_for(key, partitions))
        builder = builders.get(where)
        if builder is None:
            builder = builders[where] = producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:  # type: ignore[attr-defined]
            # Full: send it and start the next one (a batch always takes its first record).
            pending.append(await producer.send_batch(builder, topic, partition=where[1]))  # type: ignore[arg-type]
            builder = builders[where] = producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=list(headers))  # type: ignore[attr-defined]
    for (topic, partition), builder in builders.items():
        pending.append(await producer.send_batch(builder, topic, partition=partition))  # type: ignore[arg-type]
    if pending:
        await asyncio.gather(*pending)
