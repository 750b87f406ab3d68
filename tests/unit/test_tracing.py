"""Traces (processor/client/trace_context.py, processor/stream/tracing.py, the gateway's server
spans) with OpenTelemetry's in-memory exporter; the whole path over real Kafka and two real
processes is tests/e2e/test_traces.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from processor.client import ResultTimeout
from processor.client.trace_context import MAX_TRACEPARENT_BYTES, context_from_headers, trace_headers
from processor.gateway.application import create_app
from processor.gateway.backends import Backends
from processor.service.batch import BatchReport, DeadLetter, Reply
from processor.service.records import SourceRecord
from processor.stream.outbox import dead_letter_message, result_message
from processor.stream.tracing import MAX_RECORD_SPANS, BatchTracing
from schemas.errors import ErrorCode
from schemas.results import ErrorInfo, Result
from schemas.states import Status
from tests.unit.test_gateway_http import SETTINGS, FakeKeys, FakeReads, FakeSigningKeys

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01".encode()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def exported() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def span_context_of(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> trace.SpanContext:
    context = context_from_headers(headers)
    assert context is not None, headers
    return trace.get_current_span(context).get_span_context()


# --- trace context in Kafka headers: hostile bytes never fail a record -------------------------


def test_a_w3c_traceparent_is_read_with_its_tracestate() -> None:
    found = span_context_of([("other", b"x"), ("traceparent", TRACEPARENT), ("tracestate", b"vendor=abc")])
    assert (found.trace_id, found.span_id, found.is_remote) == (TRACE_ID, PARENT_ID, True)
    assert dict(found.trace_state) == {"vendor": "abc"}


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("traceparent", None)],
        [("traceparent", b"")],
        [("traceparent", b"not a traceparent")],
        [("traceparent", b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01")],  # the all-zero trace ID is invalid
        [("traceparent", TRACEPARENT.replace(b"0af7", b"\xff\xfe"))],  # not ASCII
        [("traceparent", TRACEPARENT + b"-" + b"a" * MAX_TRACEPARENT_BYTES)],  # too long to be read at all
        [("tracestate", b"vendor=abc")],  # a state without a parent
    ],
    ids=["absent", "null", "empty", "garbage", "zero-trace", "binary", "overlong", "state-only"],
)
def test_a_header_that_names_no_valid_span_is_ignored(headers: list[tuple[str, bytes | None]]) -> None:
    assert context_from_headers(headers) is None


def test_the_first_traceparent_counts_and_an_unusable_tracestate_is_dropped_not_the_trace() -> None:
    other = f"00-{TRACE_ID + 1:032x}-{PARENT_ID:016x}-01".encode()
    found = span_context_of([("traceparent", TRACEPARENT), ("traceparent", other), ("tracestate", b"\xff" * 10)])
    assert found.trace_id == TRACE_ID and not dict(found.trace_state)
    found = span_context_of([("traceparent", TRACEPARENT), ("tracestate", b"a=b" * 1000)])
    assert found.trace_id == TRACE_ID and not dict(found.trace_state)


def test_no_span_no_header() -> None:
    assert trace_headers() == []


# --- the processor's batch and record spans ----------------------------------------------------


def record(offset: int, *headers: tuple[str, bytes | None]) -> SourceRecord:
    return SourceRecord(topic="requests", partition=2, offset=offset, key=b"k", value=b"{}", headers=headers)


def result(reference: str, *, error: ErrorCode | None = None) -> Result:
    status = Status.Failed if error else Status.Completed
    info = ErrorInfo(code=error, message="no") if error else None
    return Result(reference_id=reference, project_id="p", type="transaction.run", status=status, error=info, processed_at=NOW)


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_traced_record_gets_a_span_in_its_own_trace_linked_with_its_batch(exported: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = exported
    completed, failed, untraced, lettered = (
        record(10, ("traceparent", TRACEPARENT)),
        record(11, ("traceparent", f"00-{TRACE_ID:032x}-{PARENT_ID + 1:016x}-01".encode())),
        record(12, ("traceparent", b"garbage")),
        record(13, ("traceparent", f"00-{TRACE_ID:032x}-{PARENT_ID + 2:016x}-01".encode())),
    )
    batch = BatchTracing(tracer_provider=provider, topic="requests").begin([completed, failed, untraced, lettered])
    assert batch.traced_records == 3
    report = BatchReport(
        replies=[Reply(record=completed, result=result("ok"), key=b"p/ok", value=b"{}"),
                 Reply(record=failed, result=result("no", error=ErrorCode.InsufficientFunds), key=b"p/no", value=b"{}", duplicate="same-request"),
                 Reply(record=untraced, result=result("plain"), key=b"p/plain", value=b"{}")],
        dead_letters=[DeadLetter(record=lettered, reason="not UTF-8 JSON")],
        phase_seconds={"decode": 0.001, "engine": 0.002, "commit": 0.003},
    )  # fmt: skip
    batch.applied(report, started=100.0, ended=100.01)
    answers = {r.offset: batch.headers_for(r) for r in (completed, failed, untraced, lettered)}
    batch.published(report)
    batch.stage("commit offsets", started=100.02, ended=100.03)
    batch.end()

    spans = exporter.get_finished_spans()
    [batch_span] = by_name(spans, "batch requests")
    records = {span.attributes["messaging.kafka.offset"]: span for span in by_name(spans, "process requests")}
    assert sorted(records) == [10, 11, 13], "the untraced record gets no span"
    for offset, span in records.items():
        assert span.kind is SpanKind.CONSUMER and span.context.trace_id == TRACE_ID  # the record's own trace
        assert span.parent is not None and span.parent.is_remote and span.parent.span_id != span.context.span_id
        assert [link.context.span_id for link in span.links] == [batch_span.context.span_id]
        assert span_context_of(answers[offset]).span_id == span.context.span_id, "the answer carries the record's span"
    assert answers[12] == ()
    assert {link.context.span_id for link in batch_span.links} == {span.context.span_id for span in records.values()}
    assert batch_span.attributes["messaging.batch.message_count"] == 4 and batch_span.context.trace_id != TRACE_ID
    assert records[10].attributes["cloudwallet.status"] == "Completed" and "cloudwallet.error_code" not in records[10].attributes
    assert records[11].attributes["cloudwallet.error_code"] == "InsufficientFunds" and records[11].attributes["cloudwallet.duplicate"] == "same-request"
    assert records[13].status.status_code is StatusCode.ERROR and records[13].attributes["cloudwallet.dlq_reason"] == "not UTF-8 JSON"
    stages = [span for span in spans if span.parent is not None and span.parent.span_id == batch_span.context.span_id]
    assert {span.name for span in stages} == {"apply and commit", "decode", "engine", "commit", "commit offsets"}
    [applied] = by_name(spans, "apply and commit")
    assert applied.end_time - applied.start_time == pytest.approx(10_000_000, abs=1000)
    decode, engine = by_name(spans, "decode")[0], by_name(spans, "engine")[0]
    assert applied.start_time == decode.start_time and decode.end_time == engine.start_time, "phases laid end to end"


def test_a_rewound_batch_ends_its_spans_as_errors(exported: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = exported
    batch = BatchTracing(tracer_provider=provider, topic="requests").begin([record(1, ("traceparent", TRACEPARENT))])
    batch.end(error=ConnectionError("the database went away"))
    spans = exporter.get_finished_spans()
    assert len(spans) == 2 and all(span.status.status_code is StatusCode.ERROR for span in spans)
    [batch_span] = by_name(spans, "batch requests")
    assert [event.name for event in batch_span.events] == ["exception"]


def test_the_trace_headers_go_on_results_and_dead_letters_and_survive_their_degrading(exported: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, _ = exported
    source = record(5, ("traceparent", TRACEPARENT))
    batch = BatchTracing(tracer_provider=provider, topic="requests").begin([source])
    headers = batch.headers_for(source)
    reply = Reply(record=source, result=result("r"), key=b"p/r", value=b"{}")
    sent = result_message(reply, topic="results", trace=headers)
    assert span_context_of(list(sent.message[3])).span_id == span_context_of(headers).span_id and sent.trace == headers
    for minimal in (False, True):
        letter = dead_letter_message(DeadLetter(record=source, reason="r"), topic="dlq", max_value_bytes=100, minimal=minimal, trace=sent.trace)
        found = dict(letter.message[3])
        assert found["traceparent"] == dict(headers)["traceparent"]
        assert minimal or found["original.traceparent"] == TRACEPARENT  # the request's own, as it came


# --- the gateway's server spans ----------------------------------------------------------------


@dataclass
class TracedClient:
    """Answers 202 (no result in time) and remembers the span current when each write was sent."""

    seen: list[trace.SpanContext] = field(default_factory=list)

    async def submit(self, model: Any, *, timeout: float) -> Any:
        self.seen.append(trace.get_current_span().get_span_context())
        raise ResultTimeout()


async def test_the_gateway_continues_an_incoming_trace_and_sends_writes_inside_it(
    exported: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, exporter = exported
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")  # an operator records every header
    client = TracedClient()
    backends = Backends(reads=FakeReads(), keys=FakeKeys(), signing_keys=FakeSigningKeys())
    app = create_app(SETTINGS, client=client, backends=backends, tracer_provider=provider)
    body = {"reference_id": "t-1", "operations": [{"type": "Issue", "wallet_id": "w", "amount": "1"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        answer = await http.post("/projects/p/transactions", json=body, headers={"X-Api-Key": "operator", "traceparent": TRACEPARENT.decode()})
        assert answer.status_code == 202, answer.text
        assert (await http.get("/health")).status_code == 200
    [server] = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert server.name == "POST /projects/{projectId}/transactions"
    assert server.context.trace_id == TRACE_ID and server.parent is not None and server.parent.span_id == PARENT_ID
    assert [(seen.trace_id, seen.span_id) for seen in client.seen] == [(TRACE_ID, server.context.span_id)]
    recorded = " ".join(str(value) for span in exporter.get_finished_spans() for value in (span.attributes or {}).values())
    assert "operator" not in recorded, "the API key is never recorded"
    assert server.attributes["http.request.header.x_api_key"] == ("[REDACTED]",), "headers were recorded, the key's redacted"
    assert all("/health" not in span.name for span in exporter.get_finished_spans()), "probes are not traced"


def test_a_batch_traces_at_most_its_bound_of_records(exported: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = exported
    records = [record(offset, ("traceparent", f"00-{TRACE_ID:032x}-{PARENT_ID + offset:016x}-01".encode())) for offset in range(MAX_RECORD_SPANS + 10)]
    batch = BatchTracing(tracer_provider=provider, topic="requests").begin(records)
    assert batch.traced_records == MAX_RECORD_SPANS
    assert all(batch.headers_for(r) for r in records[:MAX_RECORD_SPANS]) and not any(batch.headers_for(r) for r in records[MAX_RECORD_SPANS:])
    batch.published(BatchReport())
    batch.end()
    [batch_span] = by_name(exporter.get_finished_spans(), "batch requests")
    assert len(batch_span.links) == MAX_RECORD_SPANS == len(by_name(exporter.get_finished_spans(), "process requests"))


class BrokenTracer:
    def start_span(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError("a tracing bug")


class BrokenProvider:
    def get_tracer(self, *_: Any, **__: Any) -> BrokenTracer:
        return BrokenTracer()


def test_tracing_that_fails_never_fails_the_batch(exported: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture) -> None:
    assert BatchTracing(tracer_provider=BrokenProvider(), topic="requests").begin([record(1, ("traceparent", TRACEPARENT))]) is None  # type: ignore[arg-type]
    assert "tracing failed" in caplog.text
    provider, _ = exported
    source = record(2, ("traceparent", TRACEPARENT))
    batch = BatchTracing(tracer_provider=provider, topic="requests").begin([source])
    assert batch is not None
    batch._tracer = BrokenTracer()  # type: ignore[assignment]  # the stage spans now fail
    batch.stage("publish results", started=1.0, ended=2.0)
    batch.applied(BatchReport(phase_seconds={"decode": 0.1}), started=1.0, ended=2.0)
    assert batch.headers_for(source), "what did not fail still works"
