"""One trace from an HTTP call through Kafka to the result, across two real processes: a
`cloudwallet gateway` and a `cloudwallet run` export their spans over OTLP/HTTP to a collector
this test runs (fuzz/otlp_sink.py, which decodes the protobuf as any collector does), on the
real Kafka and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from fuzz.otlp_sink import ExportedSpan, OtlpSink

from processor.client.connection import KafkaConnection
from processor.client.trace_context import context_from_headers
from schemas.signing import SigningKey

from .gateway_support import Api, open_system_wallet, run_async, running_stack, setup_project, unique
from .support import collect_results, encoded, produce_raw

pytestmark = pytest.mark.e2e


@dataclass
class TracedStack:
    collector: OtlpSink
    topology: Any
    api: Api


@pytest.fixture(scope="module")
def traced(
    kafka: KafkaConnection, roles: Any, database_url: str, run_id: str, signing_master: Path, operator_signing_key: SigningKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TracedStack]:  # fmt: skip
    """A gateway and a processor exporting their spans (every 200 ms) to a collector of the test's."""
    collector = OtlpSink()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        with running_stack(
            kafka=kafka, roles=roles, database_url=database_url, run_id=run_id, signing_master=signing_master,
            signing_key=operator_signing_key, log_dir=tmp_path_factory.mktemp("traces"), extra_env=otel,
        ) as stack:  # fmt: skip
            yield TracedStack(collector=collector, topology=stack.topology, api=stack.api())
    finally:
        collector.stop()


TRACE_ID = int("4bf92f3577b34da6a3ce929d0e0e4736", 16)
CALLER_SPAN = int("00f067aa0ba902b7", 16)
SERVER, PRODUCER, CONSUMER = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_PRODUCER, SpanProto.SPAN_KIND_CONSUMER


def test_one_trace_from_the_http_call_through_the_processor_to_the_result(traced: TracedStack) -> None:
    api, collector = traced.api, traced.collector
    project = unique("tr")
    setup_project(api, project)
    open_system_wallet(api, project, "a")
    body = {"reference_id": "traced-issue", "operations": [{"type": "Issue", "wallet_id": "a", "amount": "5.00"}]}
    caller = {"traceparent": f"00-{TRACE_ID:032x}-{CALLER_SPAN:016x}-01"}
    answer = api.ok("POST", f"/projects/{project}/transactions", json=body, headers=caller, expect=201)
    assert answer["status"] == "Completed", answer

    def complete(spans: list[ExportedSpan]) -> bool:
        return any(s.service == "cloudwallet-processor" and s.trace_id == TRACE_ID for s in spans) and any(s.name.startswith("batch ") for s in spans)

    spans = collector.wait_for(complete)
    in_trace = [span for span in spans if span.trace_id == TRACE_ID]
    [server] = [s for s in in_trace if s.kind == SERVER]
    assert (server.service, server.name, server.parent_id) == ("cloudwallet-gateway", "POST /projects/{projectId}/transactions", CALLER_SPAN)
    [send] = [s for s in in_trace if s.kind == PRODUCER]
    assert (send.service, send.parent_id) == ("cloudwallet-gateway", server.span_id)
    assert send.name == f"send {traced.topology.requests_topic}" and send.attributes["cloudwallet.reference_id"] == "traced-issue"
    [process] = [s for s in in_trace if s.service == "cloudwallet-processor"]
    assert (process.kind, process.parent_id) == (CONSUMER, send.span_id), "the processor continues the trace the gateway sent"
    assert process.attributes["cloudwallet.status"] == "Completed" and process.attributes["cloudwallet.reference_id"] == "traced-issue"
    [(batch_trace, batch_span)] = process.links
    [batch] = [s for s in spans if (s.trace_id, s.span_id) == (batch_trace, batch_span)]
    assert batch.service == "cloudwallet-processor" and (TRACE_ID, process.span_id) in batch.links
    stages = {s.name for s in spans if s.trace_id == batch.trace_id and s.parent_id == batch.span_id}
    assert {"apply and commit", "publish results", "commit offsets"} <= stages, stages

    # The result on the results topic carries the processor's span: its reader continues the trace.
    results = run_async(collect_results(topology=traced.topology, references={"traced-issue"}, timeout=30))
    [headers] = [headers for _, result, headers in results if result.reference_id == "traced-issue"]
    context = context_from_headers(list(headers.items()))
    assert context is not None, headers
    answered = trace.get_current_span(context).get_span_context()
    assert (answered.trace_id, answered.span_id) == (TRACE_ID, process.span_id)


def test_a_record_without_a_usable_trace_is_processed_untraced(traced: TracedStack) -> None:
    project = unique("tr")
    setup_project(traced.api, project)
    request = {"type": "system_wallet.open", "project_id": project, "reference_id": "garbage-trace", "wallet_id": "g", "asset_id": "usd"}
    key, value, _ = encoded(request)
    run_async(produce_raw(traced.topology, [(key, value, None)], extra_headers=[("traceparent", b"\xff\x00 not a trace")]))
    results = run_async(collect_results(topology=traced.topology, references={"garbage-trace"}, timeout=30))
    [(result, headers)] = [(result, headers) for _, result, headers in results if result.reference_id == "garbage-trace"]
    assert result.status.value == "Completed" and "traceparent" not in headers
