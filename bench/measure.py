"""Driving traffic through Kafka and timing it: throughput (as fast as it goes) and latency
(a fixed offered rate)."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from processor.client.connection import KafkaConnection
from processor.client.latency import LatencyHistogram
from processor.client.results_topic import result_status
from processor.ingest.pipeline import Ingestor
from processor.ingest.progress import RunProgress
from processor.ingest.reading import Outgoing
from schemas.signing import SigningKey


@dataclass(kw_only=True)
class Run:
    """What one pass of records through Kafka gave."""

    name: str
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(exact=True))  # the figures are measured values
    answered_at: array = field(default_factory=lambda: array("d"))  # when each result came, in arrival order
    first_sent: float = 0.0
    last_result: float = 0.0
    missing: int = 0
    result_bytes: int = 0
    request_bytes: int = 0

    @property
    def elapsed(self) -> float:
        return max(self.last_result - self.first_sent, 1e-9)

    def rate(self) -> float:
        return self.answered / self.elapsed

    def latency_ms(self) -> dict[str, float | None]:
        return {"p50_ms": self.latency.percentile_ms(0.50), "p99_ms": self.latency.percentile_ms(0.99), "p999_ms": self.latency.percentile_ms(0.999)}

    def late_vs_early(self) -> float | None:
        """The rate of the last tenth of the results against the first tenth's: how the rate
        holds up as the tables grow (1.0: not at all slower)."""
        times = self.answered_at
        tenth = len(times) // 10
        if tenth < 2:
            return None
        # Both from result to result: the first tenth does not pay for the time to the first one.
        early = (times[tenth] - times[0]) or 1e-9
        late = (times[-1] - times[-tenth - 1]) or 1e-9
        return round((tenth / late) / (tenth / early), 3)


def _show(*, bar: RunProgress, ingestor: Ingestor, total: int, final: bool = False) -> None:
    """One update of a phase's progress display: results answered of the phase's records."""
    done = ingestor.answered
    bar.update(
        done=done, share=done / total if total else 1.0, expected=total,
        counts=f"{done:,}/{total:,} answered, {ingestor.in_flight:,} in flight", final=final,
    )


async def _drain(*, run: Run, ingestor: Ingestor, bar: RunProgress, total: int, timeout: float) -> None:
    """Wait for the results still in flight (showing progress); count what never came."""
    run.sent = total
    run.missing = len(await ingestor.drain(idle_timeout=timeout, tick=lambda: _show(bar=bar, ingestor=ingestor, total=total)))
    _show(bar=bar, ingestor=ingestor, total=total, final=True)


class Target(TypedDict):
    """Where a run's traffic goes: the cluster, the signing key and the bench topics."""

    kafka: KafkaConnection
    signing_key: SigningKey | None
    requests_topic: str
    results_topic: str


async def _with_ingestor(*, window: int, run: Run, scheduled: array | None = None, **target: Unpack[Target]) -> Ingestor:
    """A started Ingestor whose results are counted into `run` (latency from `scheduled[tag]`
    when given: the fixed-rate runs' offered times)."""
    def on_result(tag: int, latency: float, value: bytes, duplicate: bool) -> None:
        now = time.monotonic()
        run.answered += 1
        run.last_result = now
        run.answered_at.append(now)
        run.result_bytes += len(value)
        run.latency.add(now - scheduled[tag] if scheduled is not None else latency)
        status, code = ("Failed", "DuplicateReferenceId") if duplicate else result_status(value)
        run.statuses[status] += 1
        if code is not None:
            run.errors[code] += 1

    def on_lost(tag: int, reason: str) -> None:
        run.errors["NotDelivered"] += 1

    ingestor = Ingestor(
        **target,
        on_result=on_result,
        on_lost=on_lost,
        window=window,
        compression="lz4",
        linger_ms=5 if scheduled is None else 2,
        client_id="cloudwallet-bench",
    )
    await ingestor.start()
    return ingestor


@asynccontextmanager
async def _phase(name: str, *, total: int, window: int, timeout: float, progress: bool, scheduled: array | None = None, **target: Unpack[Target]) -> AsyncIterator[tuple[Run, Ingestor, RunProgress]]:
    """One pass of `total` records: the body publishes them; then the results still in flight
    are awaited (with progress shown) and the Ingestor stopped, whatever happened."""
    run = Run(name=name)
    ingestor = await _with_ingestor(window=window, run=run, scheduled=scheduled, **target)
    try:
        with RunProgress(label=f"  {name}", enabled=progress) as bar:
            yield run, ingestor, bar
            await _drain(run=run, ingestor=ingestor, bar=bar, total=total, timeout=timeout)
    finally:
        await ingestor.stop()


async def throughput(name: str, records: list[Outgoing], *, window: int, timeout: float = 120.0, progress: bool = True, **target: Unpack[Target]) -> Run:
    """Publish every record as fast as the window allows; time first publish -> last result."""
    async with _phase(name, total=len(records), window=window, timeout=timeout, progress=progress, **target) as (run, ingestor, bar):
        run.first_sent = time.monotonic()
        for index, record in enumerate(records):
            await ingestor.submit(record, tag=index)
            run.request_bytes += len(record.value)
            if index % 512 == 0:
                _show(bar=bar, ingestor=ingestor, total=len(records))
    return run


async def fixed_rate(name: str, records: list[Outgoing], *, rate: float, timeout: float = 60.0, progress: bool = True, **target: Unpack[Target]) -> Run:
    """Offer `rate` records per second; latency is measured from each record's scheduled time
    (so a client that falls behind shows up in the figures instead of hiding it)."""
    scheduled = array("d", [0.0]) * len(records)
    phase = _phase(name, total=len(records), window=len(records) + 1, timeout=timeout, progress=progress, scheduled=scheduled, **target)
    async with phase as (run, ingestor, bar):
        start = time.monotonic() + 0.05
        run.first_sent = start
        index = 0
        while index < len(records):
            now = time.monotonic()
            due = min(len(records), int((now - start) * rate) + 1)
            while index < due:
                scheduled[index] = start + index / rate
                await ingestor.submit(records[index], tag=index)
                index += 1
            _show(bar=bar, ingestor=ingestor, total=len(records))
            # Sleep until the next record is due (at least a 2 ms tick: fewer wake-ups for the client).
            await asyncio.sleep(max(0.002, start + index / rate - time.monotonic()))
    return run
