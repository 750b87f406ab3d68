"""Driving traffic through Kafka and timing it: throughput (as fast as it goes) and latency
(a fixed offered rate)."""

from __future__ import annotations

import asyncio
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from processor.ingest import Ingestor, Outgoing, result_status
from processor.client.connection import KafkaConnection
from schemas.signing import SigningKey


def percentile(values: array, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[index]


@dataclass(kw_only=True)
class Run:
    """What one pass of records through Kafka gave."""

    name: str
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array = field(default_factory=lambda: array("d"))
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
        def ms(q: float) -> float | None:
            value = percentile(self.latencies, q)
            return None if value is None else round(value * 1000, 2)

        return {"p50_ms": ms(0.50), "p99_ms": ms(0.99), "p999_ms": ms(0.999)}

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


class Progress:
    """One status line on stderr, refreshed while a phase runs."""

    def __init__(self, label: str, total: int, ingestor: Ingestor, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.ingestor = ingestor
        self.enabled = enabled
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        done = self.ingestor.answered
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        text = f"  {self.label}: {done:,}/{self.total:,} answered, {self.ingestor.in_flight:,} in flight, {rate:,.0f}/s, {elapsed:,.0f}s" + (
            f", ETA {eta:,.0f}s" if not final and rate > 0 else ""
        )
        sys.stderr.write(("\r" + text + "\x1b[K" + ("\n" if final else "")) if self.tty else text + "\n")
        sys.stderr.flush()


async def _with_ingestor(*, kafka: KafkaConnection, signing_key: SigningKey | None, requests_topic: str, results_topic: str, window: int, run: Run, scheduled: array | None = None) -> Ingestor:
    def on_result(tag: int, latency: float, value: bytes, duplicate: bool) -> None:
        now = time.monotonic()
        run.answered += 1
        run.last_result = now
        run.answered_at.append(now)
        run.result_bytes += len(value)
        run.latencies.append(now - scheduled[tag] if scheduled is not None else latency)
        status, code = ("Failed", "DuplicateReferenceId") if duplicate else result_status(value)
        run.statuses[status] += 1
        if code is not None:
            run.errors[code] += 1

    def on_lost(tag: int, reason: str) -> None:
        run.errors["NotDelivered"] += 1

    ingestor = Ingestor(
        kafka=kafka,
        signing_key=signing_key,
        requests_topic=requests_topic,
        results_topic=results_topic,
        on_result=on_result,
        on_lost=on_lost,
        window=window,
        compression="lz4",
        linger_ms=5 if scheduled is None else 2,
        client_id="cloudwallet-bench",
    )
    await ingestor.start()
    return ingestor


async def throughput(
    name: str,
    records: list[Outgoing],
    *,
    kafka: KafkaConnection,
    signing_key: SigningKey | None,
    requests_topic: str,
    results_topic: str,
    window: int,
    timeout: float = 120.0,
    progress: bool = True,
) -> Run:
    """Publish every record as fast as the window allows; time first publish -> last result."""
    run = Run(name=name)
    ingestor = await _with_ingestor(kafka=kafka, signing_key=signing_key, requests_topic=requests_topic, results_topic=results_topic, window=window, run=run)
    bar = Progress(name, len(records), ingestor, enabled=progress)
    try:
        run.first_sent = time.monotonic()
        for index, record in enumerate(records):
            await ingestor.submit(record, index)
            run.request_bytes += len(record.value)
            if index % 512 == 0:
                bar.show()
        run.sent = len(records)
        drain = asyncio.create_task(ingestor.drain(idle_timeout=timeout))
        while not drain.done():
            bar.show()
            await asyncio.wait({drain}, timeout=0.5)
        run.missing = len(drain.result())
        bar.show(final=True)
    finally:
        await ingestor.stop()
    return run


async def fixed_rate(
    name: str,
    records: list[Outgoing],
    *,
    rate: float,
    kafka: KafkaConnection,
    signing_key: SigningKey | None,
    requests_topic: str,
    results_topic: str,
    timeout: float = 60.0,
    progress: bool = True,
) -> Run:
    """Offer `rate` records per second; latency is measured from each record's scheduled time
    (so a client that falls behind shows up in the figures instead of hiding it)."""
    run = Run(name=name)
    scheduled = array("d", [0.0]) * len(records)
    ingestor = await _with_ingestor(
        kafka=kafka, signing_key=signing_key, requests_topic=requests_topic, results_topic=results_topic, window=len(records) + 1, run=run, scheduled=scheduled
    )
    bar = Progress(name, len(records), ingestor, enabled=progress)
    try:
        start = time.monotonic() + 0.05
        run.first_sent = start
        index = 0
        while index < len(records):
            now = time.monotonic()
            due = min(len(records), int((now - start) * rate) + 1)
            while index < due:
                scheduled[index] = start + index / rate
                await ingestor.submit(records[index], index)
                index += 1
            bar.show()
            # Sleep until the next record is due (at least a 2 ms tick: fewer wake-ups for the client).
            await asyncio.sleep(max(0.002, start + index / rate - time.monotonic()))
        run.sent = len(records)
        drain = asyncio.create_task(ingestor.drain(idle_timeout=timeout))
        while not drain.done():
            bar.show()
            await asyncio.wait({drain}, timeout=0.5)
        run.missing = len(drain.result())
        bar.show(final=True)
    finally:
        await ingestor.stop()
    return run
