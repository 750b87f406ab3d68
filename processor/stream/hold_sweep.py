"""The sweep of holds on idle wallets: a `hold.expire` record for each Active hold past its expiry.

The engine releases a hold past its `expires_at` before any request touching its wallet applies
(by the record's log time: docs/holds-and-reversals.md). A wallet that sees no traffic would keep
such a hold Active, and its `available` low, for as long as it stays idle. Every
`hold_sweep_seconds` the processor reads up to `hold_sweep_limit` of them (the partial index
ix_holds_active_expiry) and publishes a `hold.expire` for each to the requests topic, keyed and
signed like any request (with the ledger's own key, schemas/signing.py LEDGER_KEY_ID), so the
expiry is a record of the log: a replay applies it at the same point.

Each processor sweeps only the holds whose hold.expire lands on a partition of the requests
topic assigned to it, so that N processors do not publish N copies; a partition between owners
(a rebalance) is swept by its next owner. A hold.expire spends no reference and expires nothing
early, so one published twice (around a rebalance, or by a processor that crashed before the
first was applied) does no harm; a hold already published for and not yet applied is skipped
for a few sweeps, so a slow partition is not flooded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from processor.stream.publishing import partition_for
from schemas.requests import HoldExpire, partition_key
from schemas.signing import SigningKey

log = logging.getLogger("processor.hold_sweep")

# Due holds, oldest expiry first: ix_holds_active_expiry.
DUE_HOLDS: Final = sa.text(
    "SELECT project_id, hold_id FROM holds WHERE status = 'Active' AND expires_at IS NOT NULL AND expires_at <= now() "
    "ORDER BY expires_at LIMIT :limit"
)
REPUBLISH_AFTER_SWEEPS: Final = 6  # a hold swept but still Active this many sweeps later is swept again


class HoldSweep:
    """Runs in the processor's event loop from start-up to shutdown (`start` / `stop`)."""

    def __init__(
        self, *, engine: sa.Engine, producer: Callable[[], AIOKafkaProducer | None], requests_topic: str, signing_key: SigningKey | None,
        every_seconds: float, limit: int, owned_partitions: Callable[[], set[int]],
    ) -> None:  # fmt: skip
        self._engine = engine
        self._producer = producer
        self._owned_partitions = owned_partitions  # of the requests topic, assigned to this processor now
        self._topic = requests_topic
        self._signing_key = signing_key
        self._every = every_seconds
        self._limit = limit
        self._sweeps = 0
        self._published: dict[tuple[str, str], int] = {}  # hold -> the sweep that last published it
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._every > 0:
            self._task = asyncio.create_task(self._run(), name="hold-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.sweep()
            except Exception as error:  # noqa: BLE001 - a sweep that fails is tried again next time
                log.warning("the hold sweep failed (%s); it runs again in %.0fs", type(error).__name__, self._every)

    async def sweep(self) -> int:
        """Publish a hold.expire for each due hold not published for recently; how many went out."""
        self._sweeps += 1
        started = time.monotonic()
        due = await asyncio.to_thread(self._due)
        fresh = [hold for hold in due if self._sweeps - self._published.get(hold, -REPUBLISH_AFTER_SWEEPS) >= REPUBLISH_AFTER_SWEEPS]
        producer = self._producer()
        owned = self._owned_partitions()
        if not fresh or producer is None or not owned:
            return 0
        partitions = sorted(await producer.partitions_for(self._topic))
        sent, fresh_here = [], []
        for hold in fresh:
            key, value, headers = self._record(hold)
            partition = partition_for(key, partitions)  # where the processor's own clients send it too
            if partition in owned:
                sent.append(await producer.send(self._topic, key=key, value=value, headers=headers, partition=partition))
                fresh_here.append(hold)
        if not sent:
            return 0
        await asyncio.gather(*sent)
        fresh = fresh_here
        still_due = set(due)
        self._published = {hold: sweep for hold, sweep in self._published.items() if hold in still_due}  # bounded: the due ones only
        self._published.update((hold, self._sweeps) for hold in fresh)
        log.info("published hold.expire for %d hold(s) past their expiry in %.0f ms", len(fresh), (time.monotonic() - started) * 1000)
        return len(fresh)

    def _due(self) -> list[tuple[str, str]]:
        with self._engine.connect() as connection:
            return [(row.project_id, row.hold_id) for row in connection.execute(DUE_HOLDS, {"limit": self._limit})]

    def _record(self, hold: tuple[str, str]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        request = HoldExpire.of(project_id=hold[0], hold_id=hold[1])
        value = request.model_dump_json(exclude_none=True).encode()
        headers = self._signing_key.headers(value) if self._signing_key is not None else []
        return partition_key(request).encode(), value, headers
