"""The second stage of the processor: publish a committed batch's results, then commit its
offsets to Kafka, while the first stage already applies the next batch.

Why a second stage: publishing a batch (its results' acks) and committing its Kafka offsets
took a third of a small batch's time, and the next batch waited for both although neither
touches PostgreSQL. The order that makes the processor exactly-once in effect does not move:

    PostgreSQL commit of batch N  ->  its results acked by the broker  ->  its Kafka offsets

and batches leave the stage in the order they were committed, so results keep their order per
key and Kafka's committed offsets only move forward. A crash anywhere in between is what it was
before: the records after Kafka's committed offset come again and are answered from what
PostgreSQL stored (processor/service/batch.py).

Bounded: at most `depth` committed batches wait here; the first stage waits for room
(backpressure, and a limit on the memory results take). Retried, never skipped: a batch whose
results cannot be published is tried again until they are, so no later batch's offsets are
committed past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processor.failpoints import failpoint
from processor.service.batch import BatchReport
from processor.storage.sources import Offsets
from processor.stream.retries import broker_unavailable, until_it_works
from processor.stream.tracing import BatchTrace

DEFAULT_DEPTH = 2


@dataclass(slots=True, frozen=True, kw_only=True)
class CommittedBatch:
    """A batch PostgreSQL has committed: what to publish, and the offsets to commit after."""

    report: BatchReport
    offsets: Offsets
    trace: BatchTrace | None = None  # its spans, when the processor traces (tracing.py)


class ResultsStage:
    """Publishes committed batches in order, then commits their offsets to Kafka."""

    def __init__(
        self,
        *,
        publish: Callable[[CommittedBatch], Awaitable[None]],
        commit_offsets: Callable[[CommittedBatch], Awaitable[None]],
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        assert depth >= 1, "RESULTS_STAGE_DEPTH_POSITIVE"
        self._publish = publish
        self._commit_offsets = commit_offsets
        self._queue: asyncio.Queue[CommittedBatch] = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None
        # Batches the first stage has begun and this stage has not finished: zero means every
        # record handed to the processor is published and its offset committed (or given up to
        # a rebalance), which is what a revocation and a shutdown wait for.
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cloudwallet-results-stage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def open_batches(self) -> int:
        """Batches begun by stage 1 and not yet published and committed by this stage."""
        return self._open

    def begin(self) -> None:
        """A batch enters the first stage (call `abandon` or `hand_over` for it, once)."""
        self._open += 1
        self._idle.clear()

    def abandon(self) -> None:
        """A batch begun will not be handed over (stage 1 failed and rewound it)."""
        self._finish()

    async def hand_over(self, batch: CommittedBatch) -> None:
        """Queue a committed batch; waits while `depth` batches are already waiting."""
        assert self._task is not None and not self._task.done(), "RESULTS_STAGE_RUNNING"
        await self._queue.put(batch)

    async def idle(self, *, timeout: float | None = None) -> bool:
        """Wait until every batch begun is published and committed; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _finish(self) -> None:
        assert self._open > 0, "RESULTS_STAGE_FINISHES_WHAT_BEGAN"
        self._open -= 1
        if self._open == 0:
            self._idle.set()

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                # Every error is retried: an outage pauses the stream, and any other (an operator
                # has to act: a DLQ topic deleted or closed to the processor) must not let a later
                # batch's offsets pass this one's results.
                await until_it_works(
                    "publishing results",
                    lambda: self._publish(batch),
                    retry_if=lambda error: True,
                    alarming=lambda error: not broker_unavailable(error),
                )
                failpoint("after_publish")
                await self._commit_offsets(batch)
            finally:
                self._finish()
