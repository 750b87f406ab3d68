"""The processor's OpenTelemetry traces: a span per batch, and a span per traced request.

A batch gets one root span, `batch {topic}`, with a child per stage (`apply and commit`, its
phases, `publish results`, `commit offsets`). A record whose headers carry a W3C trace context
(processor/client/trace_context.py) gets its own span, `process {topic}`, continuing the trace
it came with: from when its batch began until its result was acknowledged by the broker. The
result (or dead letter) carries that span's context in `traceparent`, so whoever reads it can
continue the trace; the batch span and the record spans link each other.

Off unless configured (processor/telemetry.py): the Kafka app then holds no `BatchTracing` and
does no per-record work at all. On, a batch's own spans cost ~1.3 µs per record, and each
traced record ~170 µs (docs/benchmark.md): at most `MAX_RECORD_SPANS` records of a batch are
traced, whatever its clients send. Tracing never fails a batch: an error in it is logged and
the batch goes on (untraced from there).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from processor.client.trace_context import context_from_headers, trace_headers
from processor.service.batch import PHASES, BatchReport, DeadLetter, Reply
from processor.service.records import SourceRecord
from processor.stream.publishing import Header

# At most this many records of a batch get a span (the first ones that carry a trace context);
# the others are processed untraced. A traced record costs ~70 µs of span work here and ~100 µs
# of OTLP encoding in the exporter's thread (docs/benchmark.md): a client sending a sampled trace
# on every record must not halve the processor's throughput.
MAX_RECORD_SPANS: Final = 64
INSTRUMENTATION_NAME: Final = "cloudwallet.processor"

RecordAt = tuple[int, int]  # (partition, offset) in the batch's topic
P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("processor.tracing")


def harmless(*, fallback: object) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Tracing runs inside the batch path: what it raises is logged and `fallback` returned,
    never a failed (and retried, or rewound) batch."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except Exception:  # noqa: BLE001 - see above
                log.exception("tracing failed in %s; the batch goes on", function.__qualname__)
                return fallback  # type: ignore[return-value]

        return guarded

    return decorate


def _epoch_ns(monotonic_s: float, *, anchor: tuple[float, int]) -> int:
    """A monotonic clock reading as the wall-clock nanoseconds spans take."""
    return anchor[1] + int((monotonic_s - anchor[0]) * 1e9)


class BatchTrace:
    """The spans of one batch, from stage 1 to its offsets' commit."""

    def __init__(self, *, tracer: Tracer, topic: str, records: Sequence[SourceRecord]) -> None:
        self._tracer = tracer
        self._anchor = (time.monotonic(), time.time_ns())
        self._records: dict[RecordAt, Span] = {}
        self._batch = tracer.start_span(
            f"batch {topic}", kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic, "messaging.operation.type": "process",
                        "messaging.batch.message_count": len(records)},
        )  # fmt: skip
        batch_link = [Link(self._batch.get_span_context())]
        name = f"process {topic}"
        for record in records:
            if len(self._records) == MAX_RECORD_SPANS:
                break
            context = context_from_headers(record.headers)
            if context is None:
                continue
            # Few attributes: each costs its share of the encoding (the batch span has the topic's).
            span = tracer.start_span(
                name, context=context, kind=SpanKind.CONSUMER, links=batch_link,
                attributes={"messaging.destination.partition.id": str(record.partition), "messaging.kafka.offset": record.offset},
            )
            self._records[(record.partition, record.offset)] = span
            self._batch.add_link(span.get_span_context())

    @property
    def traced_records(self) -> int:
        return len(self._records)

    @harmless(fallback=None)
    def stage(self, name: str, *, started: float, ended: float, attributes: dict[str, int | float | str] | None = None) -> None:
        """A finished stage of the batch, from monotonic `started` to `ended`."""
        span = self._tracer.start_span(
            name, context=trace.set_span_in_context(self._batch), start_time=_epoch_ns(started, anchor=self._anchor), attributes=attributes
        )
        span.end(end_time=_epoch_ns(ended, anchor=self._anchor))

    @harmless(fallback=None)
    def applied(self, report: BatchReport, *, started: float, ended: float) -> None:
        """Stage 1 done: its span, and its phases laid end to end inside it (a phase's time is
        summed over the batch's runs when it ran again after a conflict)."""
        self.stage("apply and commit", started=started, ended=ended, attributes={"cloudwallet.conflict_retries": report.conflict_retries})
        at = started
        for phase in PHASES:
            seconds = report.phase_seconds.get(phase)
            if seconds is not None:
                self.stage(phase, started=at, ended=at + seconds)
                at += seconds

    @harmless(fallback=())
    def headers_for(self, record: SourceRecord) -> tuple[Header, ...]:
        """The trace headers of the answer to `record`: its span's context (none if untraced)."""
        span = self._records.get((record.partition, record.offset))
        return () if span is None else tuple(trace_headers(trace.set_span_in_context(span)))

    @harmless(fallback=None)
    def published(self, report: BatchReport) -> None:
        """Every answer is acknowledged: each traced record's span says what it got, and ends."""
        for reply in report.replies:
            self._answered(reply)
        for letter in report.dead_letters:
            self._dead_lettered(letter)
        for span in self._records.values():
            span.end()
        self._records.clear()

    def _answered(self, reply: Reply) -> None:
        span = self._records.get((reply.record.partition, reply.record.offset))
        if span is None:
            return
        result = reply.result
        attributes = {"cloudwallet.request_type": result.type, "cloudwallet.reference_id": result.reference_id, "cloudwallet.status": result.status.value}
        if result.error is not None:
            attributes["cloudwallet.error_code"] = result.error.code.value
        if reply.duplicate is not None:
            attributes["cloudwallet.duplicate"] = reply.duplicate
        span.set_attributes(attributes)

    def _dead_lettered(self, letter: DeadLetter) -> None:
        span = self._records.get((letter.record.partition, letter.record.offset))
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, "dead-lettered"))
            span.set_attribute("cloudwallet.dlq_reason", letter.reason)

    @harmless(fallback=None)
    def end(self, *, error: BaseException | None = None) -> None:
        """The batch is over: committed, or (`error`) rewound to come again."""
        if error is not None:
            for span in self._records.values():
                span.set_status(Status(StatusCode.ERROR, "the batch was rewound; it comes again"))
                span.end()
            self._records.clear()
            self._batch.record_exception(error)
            self._batch.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._batch.end()


class BatchTracing:
    """Makes the `BatchTrace` of each batch."""

    def __init__(self, *, tracer_provider: TracerProvider, topic: str) -> None:
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)
        self._topic = topic

    @harmless(fallback=None)
    def begin(self, records: Sequence[SourceRecord]) -> BatchTrace | None:
        """The batch's spans, begun; None when they could not be (the batch goes on untraced)."""
        return BatchTrace(tracer=self._tracer, topic=self._topic, records=records)
