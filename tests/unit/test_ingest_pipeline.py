"""The Ingestor without a broker: a window of requests in flight, results matched by key to the
request that sent them (a reference sent twice is answered twice), lost deliveries reported,
and what never came returned by drain. The producer is a stand-in; results are handed to the
client library's follower as its poll loop would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from processor.client.connection import KafkaConnection
from processor.ingest.pipeline import Ingestor
from processor.ingest.reading import Outgoing

KAFKA = KafkaConnection(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT")


@dataclass
class Record:
    key: bytes
    value: bytes
    headers: tuple = ()


class Producer:
    """Takes every send; a send of value b"lost" fails delivery as the broker would."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value == b"lost":
            delivery.set_exception(RuntimeError("broker said no"))
        else:
            delivery.set_result(None)
        return delivery

    async def flush(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def outgoing(reference: str, value: bytes = b"{}") -> Outgoing:
    return Outgoing(key=b"p/a", value=value, result_key=f"p/{reference}", line=1, type="transaction.run")


@pytest.fixture
async def ingestor():
    """Makes Ingestors with the stand-in producer (never started) and stops them after the test."""
    made: list[Ingestor] = []

    def make(window: int) -> tuple[Ingestor, list, list]:
        answered: list = []
        lost: list = []
        pipeline = Ingestor(
            kafka=KAFKA, requests_topic="requests", results_topic="results", window=window, compression=None,
            on_result=lambda tag, latency, value, duplicate: answered.append((tag, value, duplicate)),
            on_lost=lambda tag, reason: lost.append((tag, reason)),
        )
        pipeline._producer = Producer()  # type: ignore[assignment]
        made.append(pipeline)
        return pipeline, answered, lost

    yield make
    for pipeline in made:
        await pipeline.stop()


async def test_the_window_holds_submits_until_results_come(ingestor) -> None:
    pipeline, answered, _ = ingestor(window=2)
    await pipeline.submit(outgoing("a"), tag="a")
    await pipeline.submit(outgoing("b"), tag="b")
    third = asyncio.create_task(pipeline.submit(outgoing("c"), tag="c"))
    await asyncio.sleep(0.01)
    assert not third.done() and pipeline.in_flight == 2
    pipeline._results._resolve(Record(key=b"p/a", value=b"A"), now=0.0)
    await asyncio.wait_for(third, 1)
    assert answered == [("a", b"A", False)] and pipeline.in_flight == 2 and pipeline.sent == 3


async def test_a_reference_sent_twice_is_answered_twice_and_a_duplicate_is_flagged(ingestor) -> None:
    pipeline, answered, _ = ingestor(window=10)
    await pipeline.submit(outgoing("r"), tag=1)
    await pipeline.submit(outgoing("r"), tag=2)
    pipeline._results._resolve(Record(key=b"p/r", value=b"first"), now=0.0)
    pipeline._results._resolve(Record(key=b"p/r", value=b"first", headers=(("duplicate", b"same-request"),)), now=0.0)
    assert answered == [(1, b"first", False), (2, b"first", True)] and pipeline.answered == 2


async def test_lost_deliveries_are_reported_and_drain_returns_what_never_came(ingestor) -> None:
    pipeline, _, lost = ingestor(window=10)
    await pipeline.submit(outgoing("x", b"lost"), tag="x")
    await pipeline.submit(outgoing("y"), tag="y")
    await asyncio.sleep(0)  # delivery callbacks run
    assert [tag for tag, _ in lost] == ["x"] and "broker said no" in lost[0][1]
    assert await pipeline.drain(idle_timeout=0.1) == ["y"] and pipeline.in_flight == 0
