"""Stage 2 of the processor (processor/stream/results_stage.py): order, backpressure, retries, idle.

The real broker and database are in tests/e2e (the kill -9 tests cross both stages); here the
stage's own rules, with plain functions standing for publishing and committing."""

from __future__ import annotations

import asyncio

from processor.service.batch import BatchReport
from processor.stream.results_stage import CommittedBatch, ResultsStage


def batch(offset: int) -> CommittedBatch:
    return CommittedBatch(report=BatchReport(), offsets={("requests", 0): offset})


def test_batches_are_published_then_committed_in_the_order_handed_over() -> None:
    events: list[tuple[str, object]] = []

    async def publish(committed: CommittedBatch) -> None:
        events.append(("publish", id(committed.report)))
        await asyncio.sleep(0)

    async def commit(committed: CommittedBatch) -> None:
        events.append(("commit", committed.offsets[("requests", 0)]))

    async def run() -> list[CommittedBatch]:
        stage = ResultsStage(publish=publish, commit_offsets=commit, depth=2)
        stage.start()
        handed = [batch(offset) for offset in (10, 20, 30, 40)]
        for item in handed:
            stage.begin()
            await stage.hand_over(item)
        assert await stage.idle(timeout=5)
        await stage.stop()
        return handed

    handed = asyncio.run(run())
    expected: list[tuple[str, object]] = []
    for item in handed:
        expected += [("publish", id(item.report)), ("commit", item.offsets[("requests", 0)])]
    assert events == expected


def test_hand_over_waits_while_the_stage_is_full() -> None:
    async def run() -> tuple[bool, bool]:
        gate = asyncio.Event()

        async def publish(committed: CommittedBatch) -> None:
            await gate.wait()

        async def commit(committed: CommittedBatch) -> None:
            return None

        stage = ResultsStage(publish=publish, commit_offsets=commit, depth=1)
        stage.start()
        for offset in (1, 2):  # one being published, one waiting: the stage is full
            stage.begin()
            await stage.hand_over(batch(offset))
        stage.begin()
        third = asyncio.create_task(stage.hand_over(batch(3)))
        await asyncio.sleep(0.05)
        blocked = not third.done()
        gate.set()
        await asyncio.wait_for(third, 5)
        idle = await stage.idle(timeout=5)
        await stage.stop()
        return blocked, idle

    blocked, idle = asyncio.run(run())
    assert blocked, "a full stage makes the first stage wait (backpressure)"
    assert idle


def test_a_failed_publish_is_retried_and_its_offsets_wait_for_it() -> None:
    attempts: list[int] = []
    commits: list[int] = []

    async def publish(committed: CommittedBatch) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("the DLQ topic refused the letter")  # not an outage: retried all the same

    async def commit(committed: CommittedBatch) -> None:
        commits.append(committed.offsets[("requests", 0)])

    async def run() -> None:
        stage = ResultsStage(publish=publish, commit_offsets=commit)
        stage.start()
        stage.begin()
        await stage.hand_over(batch(7))
        assert await stage.idle(timeout=10)
        await stage.stop()

    asyncio.run(run())
    assert len(attempts) == 3 and commits == [7]


def test_idle_counts_batches_begun_but_not_yet_handed_over() -> None:
    async def run() -> tuple[bool, bool]:
        async def publish(committed: CommittedBatch) -> None:
            return None

        async def commit(committed: CommittedBatch) -> None:
            return None

        stage = ResultsStage(publish=publish, commit_offsets=commit)
        stage.start()
        stage.begin()  # stage 1 is applying a batch
        busy = not await stage.idle(timeout=0.05)
        stage.abandon()  # it had nothing to publish
        idle = await stage.idle(timeout=1)
        await stage.stop()
        return busy, idle

    busy, idle = asyncio.run(run())
    assert busy and idle
