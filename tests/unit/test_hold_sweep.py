"""The hold sweep's share of the work (processor/stream/hold_sweep.py): each processor publishes
hold.expire only for holds whose record lands on a partition assigned to it, so processors that
split the requests topic split the sweep, with no hold published twice and none left out. The
database read and the producer are stand-ins here; the sweep through a real processor, broker
and database is tests/e2e/test_processor.py's idle-wallet test."""

from __future__ import annotations

import asyncio
from typing import Any

from processor.stream.hold_sweep import HoldSweep
from processor.stream.publishing import partition_for

PARTITIONS = list(range(8))
DUE = [(f"p{i % 3}", f"h{i}") for i in range(200)]


class RecordingProducer:
    """What the sweep needs of aiokafka's producer: the topic's partitions, and `send`."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: Any, partition: int) -> asyncio.Future[None]:
        self.sent.append((value, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class SweepOf(HoldSweep):
    def _due(self) -> list[tuple[str, str]]:  # the database's answer: these holds are due
        return DUE


def sweep_owning(owned: set[int], producer: RecordingProducer) -> SweepOf:
    return SweepOf(engine=None, producer=lambda: producer, requests_topic="requests", signing_key=None,  # type: ignore[arg-type]
                   every_seconds=1, limit=1000, owned_partitions=lambda: owned)  # fmt: skip


async def test_two_processors_split_the_sweep_by_their_partitions() -> None:
    first, second = RecordingProducer(), RecordingProducer()
    assert await sweep_owning({0, 1, 2, 3}, first).sweep() + await sweep_owning({4, 5, 6, 7}, second).sweep() == len(DUE)
    assert {partition for _, partition in first.sent} <= {0, 1, 2, 3} and {partition for _, partition in second.sent} <= {4, 5, 6, 7}
    values = [value for value, _ in first.sent + second.sent]
    assert len(values) == len(set(values)) == len(DUE), "every due hold published once"
    sweep = sweep_owning(set(PARTITIONS), RecordingProducer())
    for value, partition in first.sent + second.sent:  # each went where its key hashes, as the clients send it
        key, *_ = sweep._record(next(hold for hold in DUE if f'"hold_id":"{hold[1]}"'.encode() in value and f'"project_id":"{hold[0]}"'.encode() in value))
        assert partition == partition_for(key, PARTITIONS)


async def test_a_processor_without_partitions_publishes_nothing() -> None:
    producer = RecordingProducer()
    assert await sweep_owning(set(), producer).sweep() == 0 and producer.sent == []
