"""`python -m bench.tracing_cost`: what the processor's traces cost per record (no Kafka, no
database): processor/stream/tracing.py's spans for batches of 1,000 records of which a share
carries a sampled W3C traceparent, each span encoded as the OTLP exporter encodes it (the
exporter's thread does that work in the processor, on the same cores). docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from processor.service.batch import BatchReport, Reply
from processor.service.records import SourceRecord
from processor.stream.tracing import MAX_RECORD_SPANS, BatchTracing
from schemas.results import Result
from schemas.states import Status


class EncodingExporter(SpanExporter):
    """Encodes what it is given as OTLP protobuf, then drops it."""

    def __init__(self) -> None:
        self.encoded_bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.encoded_bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def batch_of(size: int, *, traced_share: float, rng: random.Random) -> tuple[list[SourceRecord], BatchReport]:
    signed = (("signature_key_id", b"0123456789abcdef"), ("signature", b"a" * 64))
    records = []
    for offset in range(size):
        trace = (("traceparent", f"00-{rng.getrandbits(128) | 1:032x}-{rng.getrandbits(64) | 1:016x}-01".encode()),) if rng.random() < traced_share else ()
        records.append(SourceRecord(topic="wallet.requests", partition=0, offset=offset, key=b"k", value=b"{}", headers=signed + trace))
    result = Result(reference_id="r-1", project_id="p", type="transaction.run", status=Status.Completed, processed_at=datetime.now(UTC))
    replies = [Reply(record=record, result=result, key=b"p/r-1", value=b"{}") for record in records]
    return records, BatchReport(replies=replies, phase_seconds={"decode": 0.01, "load_and_lock": 0.02, "engine": 0.03, "write": 0.04, "commit": 0.01})


def per_record_us(*, size: int, traced_share: float, rounds: int, seed: int) -> float:
    """Median over `rounds` batches of the CPU per record: spans made, answered, ended, encoded."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EncodingExporter()))
    tracing = BatchTracing(tracer_provider=provider, topic="wallet.requests")
    records, report = batch_of(size, traced_share=traced_share, rng=random.Random(seed))
    times = []
    for _ in range(rounds):
        started = time.process_time()
        trace = tracing.begin(records)
        trace.applied(report, started=1.0, ended=1.1)
        for record in records:
            trace.headers_for(record)
        trace.stage("publish results", started=1.1, ended=1.2)
        trace.published(report)
        trace.stage("commit offsets", started=1.2, ended=1.3)
        trace.end()
        times.append((time.process_time() - started) / size * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tracing_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    print(f"batches of {args.batch:,} records; at most {MAX_RECORD_SPANS} record spans per batch")
    for share in (0.0, 0.01, 0.1, 1.0):
        cost = per_record_us(size=args.batch, traced_share=share, rounds=args.rounds, seed=1)
        print(f"  {share:>5.0%} of the records traced: {cost:6.1f} µs CPU per record of the batch")
    one = per_record_us(size=MAX_RECORD_SPANS, traced_share=1.0, rounds=args.rounds, seed=1)
    print(f"  a traced record alone: {one:6.1f} µs CPU (its span, its answer's header, its encoding; the batch's spans shared by {MAX_RECORD_SPANS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
