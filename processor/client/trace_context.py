"""W3C trace context in Kafka headers: how a request's trace reaches the processor, and how a
result's trace comes back (headers `traceparent` and `tracestate`, docs/contract.md).

Only OpenTelemetry's API is used here: with no SDK configured every span is a no-op, and a
client whose caller traces nothing adds no header at all. Headers read from Kafka are hostile:
they are bounded before they are decoded, and anything the W3C format refuses is ignored (the
record is processed as if it carried no trace), never an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT_HEADER: Final = "traceparent"
TRACESTATE_HEADER: Final = "tracestate"
# Version 00 of traceparent is 55 characters; a later version may append fields. tracestate is
# at most 32 list members; 512 characters is what the W3C asks every hop to keep.
MAX_TRACEPARENT_BYTES: Final = 256
MAX_TRACESTATE_BYTES: Final = 512

_PROPAGATOR: Final = TraceContextTextMapPropagator()

Header = tuple[str, bytes]


def trace_headers(context: Context | None = None) -> list[Header]:
    """The headers carrying `context`'s span (the current one by default); none when it has no
    valid span (nothing is traced)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return [(name, value.encode()) for name, value in carrier.items()]


def is_tracing() -> bool:
    """Whether the caller is inside a span that is being recorded or propagated."""
    return trace.get_current_span().get_span_context().is_valid


def context_from_headers(headers: Iterable[tuple[str, bytes | None]]) -> Context | None:
    """The remote span a record's headers name, or None when they name none (absent, too long,
    not ASCII, or not the W3C format). The first header of each name counts; a tracestate that
    is unusable is dropped and the trace kept."""
    parent: bytes | None = None
    state: bytes | None = None
    for name, value in headers:
        if name == TRACEPARENT_HEADER and parent is None:
            parent = value or b""
        elif name == TRACESTATE_HEADER and state is None:
            state = value or b""
    if not parent or len(parent) > MAX_TRACEPARENT_BYTES:
        return None
    if not parent.isascii():
        return None
    carrier = {TRACEPARENT_HEADER: parent.decode("ascii")}
    if state and len(state) <= MAX_TRACESTATE_BYTES and state.isascii():  # else dropped, the trace kept
        carrier[TRACESTATE_HEADER] = state.decode("ascii")
    context = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context
