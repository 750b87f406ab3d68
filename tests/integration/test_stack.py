"""The stack itself: a real Kafka broker and a real PostgreSQL behave as the processor relies on."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.integration


async def _drain(consumer: AIOKafkaConsumer, *, expected: int, timeout: float = 20.0) -> list:
    records: list = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(records) < expected and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for partition_records in batch.values():
            records.extend(partition_records)
    return records


async def test_keyed_messages_keep_order_per_key_and_consumer_resumes_from_committed_offsets(new_topic, kafka):
    topic = await new_topic("keyed", partitions=3)
    producer = AIOKafkaProducer(**kafka.options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for sequence in range(60):
            await producer.send(topic, key=f"wallet-{sequence % 6}".encode(), value=str(sequence).encode())
        await producer.flush()
    finally:
        await producer.stop()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            **kafka.options(),
            group_id=f"{topic}.group",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = consumer()
    await first.start()
    try:
        records = await _drain(first, expected=60)
        assert len(records) == 60
        partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
        values_by_key: dict[bytes, list[int]] = defaultdict(list)
        for record in records:
            partitions_by_key[record.key].add(record.partition)
            values_by_key[record.key].append(int(record.value))
        assert all(len(partitions) == 1 for partitions in partitions_by_key.values()), "one key, one partition"
        assert len({p for ps in partitions_by_key.values() for p in ps}) > 1, "keys spread over partitions"
        for values in values_by_key.values():
            assert values == sorted(values), "order kept per key"
        # Commit only half of each partition: a restarted consumer must resume exactly there.
        commits = {}
        by_partition: dict[int, list] = defaultdict(list)
        for record in records:
            by_partition[record.partition].append(record)
        for partition, partition_records in by_partition.items():
            half = partition_records[len(partition_records) // 2]
            commits[TopicPartition(topic, partition)] = half.offset
        await first.commit(commits)
    finally:
        await first.stop()

    expected_rest = sum(len(rs) - len(rs) // 2 for rs in by_partition.values())
    second = consumer()
    await second.start()
    try:
        rest = await _drain(second, expected=expected_rest)
        assert len(rest) == expected_rest
        for record in rest:
            assert record.offset >= commits[TopicPartition(topic, record.partition)]
        assert {(r.partition, r.offset) for r in rest} == {
            (p, r.offset) for p, rs in by_partition.items() for r in rs[len(rs) // 2 :]
        }
    finally:
        await second.stop()


async def test_transactional_producer_commits_and_aborts(new_topic, kafka):
    topic = await new_topic("transactional", partitions=2)
    producer = AIOKafkaProducer(**kafka.options(), transactional_id=f"{topic}.tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, key=b"a", value=b"committed-1")
            await producer.send(topic, key=b"b", value=b"committed-2")
        await producer.begin_transaction()
        await producer.send(topic, key=b"a", value=b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, key=b"a", value=b"committed-3")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **kafka.options(),
        group_id=f"{topic}.group",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        records = await _drain(consumer, expected=3)
        await asyncio.sleep(0.5)
        records += await _drain(consumer, expected=1, timeout=1.0)
    finally:
        await consumer.stop()
    assert sorted(r.value for r in records) == [b"committed-1", b"committed-2", b"committed-3"]


def test_postgres_round_trip_is_exact(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE stack_probe (id int PRIMARY KEY, amount numeric(38, 0) NOT NULL CHECK (amount >= 0))"))
            big = 10**37 + 7
            connection.execute(sa.text("INSERT INTO stack_probe VALUES (1, :amount)"), {"amount": big})
            stored = connection.execute(sa.text("SELECT amount FROM stack_probe WHERE id = 1")).scalar_one()
            assert stored == Decimal(big) and int(stored) == big
            driver = connection.dialect.driver
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as connection:
                connection.execute(sa.text("INSERT INTO stack_probe VALUES (2, -1)"))
        assert driver == "psycopg"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS stack_probe"))
        engine.dispose()
