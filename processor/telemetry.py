"""OpenTelemetry set-up for the processes (`cloudwallet run`, `cloudwallet gateway`): traces to
an OTLP/HTTP collector, or nothing at all.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set
(processor/settings.py, TracingSettings). On, the process gets one SDK tracer provider, made
the global one (so that the client library's spans join it), exporting in batches in the
background: a collector that is slow or gone costs dropped spans, never a stalled batch. The
SDK reads the rest of OpenTelemetry's variables itself: OTEL_SERVICE_NAME (default below),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_HEADERS (never logged),
OTEL_BSP_SCHEDULE_DELAY and the span processor's queue bounds.
"""

from __future__ import annotations

import logging
from typing import Final

from opentelemetry.trace import TracerProvider

from processor.settings import TracingSettings

log = logging.getLogger("telemetry")

# OpenTelemetry's variables the SDK reads itself once traces are on (docs/operations.md): a
# deployment may set these next to the settings of processor/settings.py.
SDK_SETTINGS: Final = frozenset({
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_EXPORT_TIMEOUT",
})  # fmt: skip


def start_tracing(settings: TracingSettings, *, service_name: str) -> TracerProvider | None:
    """The process's tracer provider, exporting to the configured collector; None when traces
    are off (then nothing of the SDK is even imported)."""
    if not settings.traces_enabled:
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service instead of the default.
    resource = Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())
    provider = SdkTracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.traces_url)))
    trace.set_tracer_provider(provider)
    log.info("traces of %s go to %s", resource.attributes.get(SERVICE_NAME), settings.traces_destination)
    return provider


def stop_tracing(provider: TracerProvider | None) -> None:
    """Export what is left, then stop (at the process's end)."""
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()
