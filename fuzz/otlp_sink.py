"""An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps every span it is sent, decoding the
protobuf as any collector does: what the fuzzer's processor (and tests/e2e/test_traces.py's
gateway and processor) export their traces to, so that tracing runs under hostile input too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_BODY_BYTES = 64 * 1024 * 1024  # an export larger than this is refused (413)


@dataclass(frozen=True, slots=True)
class ExportedSpan:
    service: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    trace_id: int
    span_id: int
    parent_id: int | None
    links: tuple[tuple[int, int], ...]  # (trace ID, span ID)
    attributes: dict[str, Any]
    error: bool


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def _spans(request: ExportTraceServiceRequest) -> list[ExportedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(ExportedSpan(
                    service=str(resource.get("service.name", "")), name=span.name, kind=span.kind,
                    trace_id=int.from_bytes(span.trace_id), span_id=int.from_bytes(span.span_id),
                    parent_id=int.from_bytes(span.parent_span_id) if span.parent_span_id else None,
                    links=tuple((int.from_bytes(link.trace_id), int.from_bytes(link.span_id)) for link in span.links),
                    attributes={item.key: _value(item.value) for item in span.attributes},
                    error=span.status.code == span.status.STATUS_CODE_ERROR,
                ))  # fmt: skip
    return found


class OtlpSink:
    """Start it, point OTEL_EXPORTER_OTLP_ENDPOINT at `endpoint`, read `spans()`; `stop()` after."""

    def __init__(self) -> None:
        self._spans: list[ExportedSpan] = []
        self._lock = threading.Lock()
        self.refused = 0  # exports that could not be decoded
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's interface
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.send_error(413)
                    return
                try:
                    spans = _spans(ExportTraceServiceRequest.FromString(self.rfile.read(length)))
                except Exception:  # noqa: BLE001 - a body that is not an export: counted, answered 400
                    sink.refused += 1
                    self.send_error(400)
                    return
                with sink._lock:
                    sink._spans.extend(spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True).start()

    def spans(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, found: Callable[[list[ExportedSpan]], bool], *, timeout: float = 30) -> list[ExportedSpan]:
        """The spans once `found(spans)` holds; AssertionError naming what came if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans not exported within {timeout}s; have: {sorted({(s.service, s.name) for s in spans})}")
            time.sleep(0.2)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
