"""The processor's AsyncAPI document: its topics, their messages, headers and keys.

    python -m processor.stream.asyncapi docs/asyncapi.json      (make asyncapi)

The real app (processor/stream/app.py) reads records as raw bytes and publishes with a plain
aiokafka producer, so FastStream sees no schema there. This module declares a documentation
twin of it instead: a broker with a subscriber on the requests topic whose message is the
contract's request union, and publishers for the results and dead-letter topics, from which
FastStream generates an AsyncAPI 3.0 document. What FastStream does not generate (message
headers, Kafka keys, topic configuration, the consumer group, the `reply_to` reply) is added to
its output here, from the names the code uses. Nothing connects to a broker or reads the
environment: the document describes ProcessorSettings' defaults.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from faststream.specification import AsyncAPI
from pydantic import Field

from processor.client.trace_context import MAX_TRACEPARENT_BYTES, MAX_TRACESTATE_BYTES, TRACEPARENT_HEADER, TRACESTATE_HEADER
from processor.settings import KafkaSettings, ProcessorSettings
from processor.stream.acls import reply_prefix
from processor.stream.outbox import CORRELATION_HEADER, MAX_DLQ_HEADER_BYTES, MAX_DLQ_KEY_BYTES, ORIGINAL_HEADER_PREFIX, REPLY_TO_HEADER
from processor.stream.topics import DLQ_OVERHEAD_BYTES
from schemas.limits import MAX_CORRELATION_ID_BYTES
from schemas.requests import Request, partition_key
from schemas.results import DUPLICATE_HEADER, DUPLICATE_KINDS, Result, result_key
from schemas.signing import KEY_ID_HEADER, SIGNATURE_HEADER

USAGE: Final = "python -m processor.stream.asyncapi docs/asyncapi.json"
# The channels' (and operations') names in the document; REPLY_CHANNEL is the topic a request's
# reply_to names, which FastStream cannot declare (it has no fixed address).
REQUESTS_CHANNEL: Final = "requests"
RESULTS_CHANNEL: Final = "results"
DLQ_CHANNEL: Final = "deadLetters"
REPLY_CHANNEL: Final = "replyTo"
# The local stack's broker (deploy/local/stack.py, `make up`): a server needs a host.
LOCAL_BOOTSTRAP_SERVERS: Final = "127.0.0.1:19092"
KAFKA_BINDING_VERSION: Final = "0.4.0"  # the Kafka bindings' version FastStream writes
DECIMAL: Final = "^[0-9]+$"  # a header holding a number, as decimal text


@dataclass(frozen=True, slots=True, kw_only=True)
class Defaults:
    """The settings the document shows: ProcessorSettings' defaults."""

    requests_topic: str
    results_topic: str
    dlq_topic: str
    consumer_group: str
    max_request_bytes: int


def settings_defaults() -> Defaults:
    # The fields' defaults, not an instance: an instance reads the environment and needs
    # DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS, and the document must not vary with either.
    fields = ProcessorSettings.model_fields
    return Defaults(
        requests_topic=fields["requests_topic"].default,
        results_topic=fields["results_topic"].default,
        dlq_topic=fields["dlq_topic"].default,
        consumer_group=fields["consumer_group"].default,
        max_request_bytes=fields["max_request_bytes"].default,
    )


def default_security() -> BaseSecurity:
    """FastStream's description of the default Kafka login (KafkaSettings' defaults)."""
    fields = KafkaSettings.model_fields
    protocol: str = fields["kafka_security_protocol"].default
    use_ssl = protocol.endswith("SSL")
    if not protocol.startswith("SASL"):
        return BaseSecurity(use_ssl=use_ssl)
    mechanisms: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    # Only the mechanism reaches the document; the broker never connects, so no login is given.
    return mechanisms[fields["kafka_sasl_mechanism"].default](username="", password="", use_ssl=use_ssl)


# --- the documentation twin ---------------------------------------------------------------

RequestPayload = Annotated[Request, Field(title="Request")]
DeadLetterValue = Annotated[
    bytes,
    Field(
        title="DeadLetterValue",
        description="The request record's value as it came, not decoded (any bytes; cut to CLOUDWALLET_MAX_REQUEST_BYTES, "
        "see the dlq_value_* headers); empty on a dead letter cut down to its reason and source.",
    ),
]


async def apply_request(request: RequestPayload) -> None:
    """Never called: it gives the subscriber its message (the real handler reads raw batches)."""


def documentation_broker(*, defaults: Defaults) -> KafkaBroker:
    broker = KafkaBroker(
        LOCAL_BOOTSTRAP_SERVERS,
        security=default_security(),
        description="The local stack's broker (`make up`; its port is CLOUDWALLET_KAFKA_PORT). A deployment's brokers are "
        "KAFKA_BOOTSTRAP_SERVERS and their login CLOUDWALLET_KAFKA_* (the default is the one shown); every principal "
        "needs ACLs on these topics (docs/security.md).",
    )
    broker.subscriber(defaults.requests_topic, title=REQUESTS_CHANNEL, description=_requests_description(defaults=defaults))(apply_request)
    broker.publisher(defaults.results_topic, title=RESULTS_CHANNEL, description=_results_description(), schema=Result)
    broker.publisher(defaults.dlq_topic, title=DLQ_CHANNEL, description=_dlq_description(defaults=defaults), schema=DeadLetterValue)
    return broker


def documentation_app(*, defaults: Defaults) -> FastStream:
    specification = AsyncAPI(
        title="cloudwallet processor",
        version=importlib.metadata.version("cloudwallet"),
        description="The Kafka side of the wallet ledger, as the processor sees it: requests in, one result per request out, "
        "undecodable records to the dead-letter topic. The request and result fields are described in docs/contract.md, "
        "processing and exactly-once in docs/processing.md, signatures in docs/security.md.",
    )
    return FastStream(documentation_broker(defaults=defaults), specification=specification)


def _requests_description(*, defaults: Defaults) -> str:
    return (
        "Requests in: one JSON object per record, UTF-8, the `Request` union discriminated by `type` (schemas/requests.py), "
        f"at most CLOUDWALLET_MAX_REQUEST_BYTES ({defaults.max_request_bytes} bytes by default). A record that cannot be "
        "decoded goes to the dead-letter topic; one that breaks the schema is answered Failed / ValidationError. Read in "
        "batches by one consumer group; the topic is created with message.timestamp.type=LogAppendTime, and that time "
        "decides hold expiry."
    )


def _results_description() -> str:
    return (
        "Results out: exactly one answer per request (Completed, or Failed with the failing operation), in request order per "
        "key. Compacted: what a key keeps is the reference's real answer; a repeat of a spent reference is answered with the "
        "original's result under the same key and a `duplicate` header."
    )


def _dlq_description(*, defaults: Defaults) -> str:
    return (
        "Dead letters: request records that get no result. Records that cannot be decoded (not UTF-8 JSON, not an object, "
        "too large, nested too deep, no answerable reference_id), records whose answer could not be built or that failed "
        "in the database even alone, and requests whose result the broker refused for good. The record as it came, "
        "bounded, with the reason and the source in headers. Created with max.message.bytes = "
        f"CLOUDWALLET_MAX_REQUEST_BYTES + {DLQ_OVERHEAD_BYTES}."
    )


# --- what FastStream does not generate ------------------------------------------------------


def _text(*, description: str, **constraints: Any) -> dict[str, Any]:
    """A header's schema: Kafka header values are bytes, shown here as the text they hold."""
    return {"type": "string", "description": description, **constraints}


W3C_TRACEPARENT: Final = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _trace_headers(*, on_request: bool) -> dict[str, Any]:
    if on_request:
        parent = (
            "W3C trace context (OpenTelemetry): the processor's span for this request continues the trace it names. "
            f"Optional; one that is not valid, not ASCII or over {MAX_TRACEPARENT_BYTES} bytes is ignored (never an error)."
        )
        state = f"W3C tracestate that goes with traceparent; dropped when not ASCII or over {MAX_TRACESTATE_BYTES} bytes."
    else:
        parent = (
            "When the request carried a usable traceparent and the processor exports traces: the W3C context of the "
            "processor's span for the request, in the request's trace (a reader continues the trace from here)."
        )
        state = "The request's tracestate, with that span."
    return {TRACEPARENT_HEADER: _text(description=parent, pattern=W3C_TRACEPARENT), TRACESTATE_HEADER: _text(description=state)}


def request_headers(*, defaults: Defaults) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            KEY_ID_HEADER: _text(description="The ID of the signing key that signed the value (docs/security.md).", pattern="^[0-9a-f]{16}$"),
            SIGNATURE_HEADER: _text(
                description="HMAC-SHA256 of the record's exact value bytes under the key's secret, in lowercase hex "
                "(schemas/signing.py). A request that is unsigned (while CLOUDWALLET_REQUIRE_SIGNATURES, the default), signed "
                "with an unknown, revoked or other project's key, or whose bytes do not match is answered Failed / "
                "Unauthorized and changes nothing.",
                pattern="^[0-9a-f]{64}$",
            ),
            CORRELATION_HEADER: _text(
                description=f"Any bytes: echoed on the result as sent, if at most {MAX_CORRELATION_ID_BYTES} bytes long."
            ),
            REPLY_TO_HEADER: _text(
                description="A topic for the result instead of the results topic: UTF-8, a valid topic name, neither the "
                "requests nor the dead-letter topic, existing and writable by the processor (on a secured broker: under the "
                f"`{reply_prefix(defaults.results_topic)}` prefix). Otherwise the result goes to the results topic with "
                "`reply_to_error`; empty names no topic; an Unauthorized answer never goes there."
            ),
            **_trace_headers(on_request=True),
        },
    }


def _source_headers() -> dict[str, Any]:
    return {
        "source_topic": _text(description="The topic of the request record this message is about."),
        "source_partition": _text(description="Its partition.", pattern=DECIMAL),
        "source_offset": _text(description="Its offset.", pattern=DECIMAL),
    }


def result_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "request_type": _text(description="The answered request's `type`, as the result's `type`."),
            **_source_headers(),
            CORRELATION_HEADER: _text(
                description=f"The request's correlation_id, byte for byte (absent when it had none or one of more than "
                f"{MAX_CORRELATION_ID_BYTES} bytes)."
            ),
            DUPLICATE_HEADER: _text(
                description="On the answer to a repeat of a spent reference, whose value is then the reference's original "
                "result: same-request when the repeat's value is byte for byte the one that spent it (a retry), "
                "different-request otherwise (a reused reference ID). Clients read it as Failed / DuplicateReferenceId with "
                "the original (schemas.results.duplicate_result).",
                enum=list(DUPLICATE_KINDS),
            ),
            "reply_to_error": _text(description="Why the result is on the results topic instead of the request's reply_to."),
            **_trace_headers(on_request=False),
        },
        "required": ["request_type", "source_topic", "source_partition", "source_offset"],
    }


def dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "dlq_reason": _text(description="Why the record got no result."),
            **_source_headers(),
            "dlq_value_bytes": _text(description="The value's size when it was cut to CLOUDWALLET_MAX_REQUEST_BYTES.", pattern=DECIMAL),
            "dlq_value_sha256": _text(description="The SHA-256 of the whole value when it was cut, in lowercase hex.", pattern="^[0-9a-f]{64}$"),
            "dlq_key_bytes": _text(description=f"The key's size when it was cut to {MAX_DLQ_KEY_BYTES} bytes.", pattern=DECIMAL),
            "dlq_headers_dropped": _text(description="How many of the record's headers were left out.", pattern=DECIMAL),
            **_trace_headers(on_request=False),
        },
        "patternProperties": {
            f"^{ORIGINAL_HEADER_PREFIX.replace('.', '[.]')}": _text(
                description=f"The record's own headers, {ORIGINAL_HEADER_PREFIX}<name>, values as sent (at most "
                f"{MAX_DLQ_HEADER_BYTES} bytes of them in all: see dlq_headers_dropped)."
            ),
        },
        "required": ["dlq_reason", "source_topic", "source_partition", "source_offset"],
    }


def _doc(function: Callable[..., Any]) -> str:
    return inspect.cleandoc(function.__doc__ or "")


def request_key() -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"schemas.requests.partition_key: {_doc(partition_key)}\n\nIt picks the partition, so the requests of "
        "one key are applied in order; the processor does not check it.",
    }


def result_key_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"schemas.results.result_key: {_doc(result_key)}\n\nThe one exception: an Unauthorized answer to a "
        "request for a spent reference is keyed \"/unauthorized/{topic}/{partition}/{offset}\" (its record), so that "
        "compaction keeps the real answer (docs/security.md).",
    }


def dead_letter_key() -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"The request record's key as it came (any bytes; cut to {MAX_DLQ_KEY_BYTES} bytes, see "
        "dlq_key_bytes); none on a dead letter cut down to its reason and source.",
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageExtras:
    """What one channel's message gets beyond FastStream's output."""

    name: str
    headers: dict[str, Any]
    key: dict[str, Any]
    content_type: str | None = None
    correlation_header: str = CORRELATION_HEADER


def message_extras(*, defaults: Defaults) -> dict[str, MessageExtras]:
    """Each channel's message's extras, by channel name."""
    return {
        REQUESTS_CHANNEL: MessageExtras(name="Request", headers=request_headers(defaults=defaults), key=request_key()),
        RESULTS_CHANNEL: MessageExtras(name="Result", headers=result_headers(), key=result_key_schema()),
        DLQ_CHANNEL: MessageExtras(
            name="DeadLetter",
            headers=dead_letter_headers(),
            key=dead_letter_key(),
            content_type="application/octet-stream",
            correlation_header=ORIGINAL_HEADER_PREFIX + CORRELATION_HEADER,
        ),
    }


def _message(document: dict[str, Any], *, channel: str) -> tuple[str, dict[str, Any]]:
    """A channel's one message, as its name and object in components/messages."""
    (reference,) = document["channels"][channel]["messages"].values()
    name = reference["$ref"].removeprefix("#/components/messages/")
    return name, document["components"]["messages"][name]


def _add_message_extras(document: dict[str, Any], *, defaults: Defaults) -> None:
    for channel, extras in message_extras(defaults=defaults).items():
        _, message = _message(document, channel=channel)
        message["name"] = extras.name
        message["headers"] = extras.headers
        message["bindings"] = {"kafka": {"key": extras.key, "bindingVersion": KAFKA_BINDING_VERSION}}
        if extras.content_type is not None:
            message["contentType"] = extras.content_type
        # FastStream puts every message's correlation ID in a `correlation_id` header; a dead
        # letter carries the request's as original.correlation_id.
        message["correlationId"] = {"location": f"$message.header#/{extras.correlation_header}"}


def _unwrap_payloads(document: dict[str, Any]) -> None:
    """Point a message straight at its model where FastStream wrapped it in a schema of its own
    (it does so for a self-referencing model such as Result: `{"$ref": ..., "properties": {}}`)."""
    schemas = document["components"]["schemas"]
    for message in document["components"]["messages"].values():
        name = message["payload"]["$ref"].removeprefix("#/components/schemas/")
        wrapper = schemas[name]
        if set(wrapper) <= {"$ref", "properties"} and "$ref" in wrapper and not wrapper.get("properties"):
            message["payload"] = {"$ref": wrapper["$ref"]}
            del schemas[name]


def _add_topic_details(document: dict[str, Any], *, defaults: Defaults) -> None:
    channels, operations = document["channels"], document["operations"]
    channels[RESULTS_CHANNEL]["bindings"]["kafka"]["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    channels[DLQ_CHANNEL]["bindings"]["kafka"]["topicConfiguration"] = {"max.message.bytes": defaults.max_request_bytes + DLQ_OVERHEAD_BYTES}
    operations[REQUESTS_CHANNEL]["bindings"] = {
        "kafka": {"groupId": {"type": "string", "enum": [defaults.consumer_group]}, "bindingVersion": KAFKA_BINDING_VERSION}
    }


def _add_reply(document: dict[str, Any]) -> None:
    """A request's result goes to the topic its reply_to header names, when that one can be
    used: a channel of no fixed address (AsyncAPI's way to say "known at run time")."""
    result_name, _ = _message(document, channel=RESULTS_CHANNEL)
    document["channels"][REPLY_CHANNEL] = {
        "address": None,
        "description": "The topic a request's reply_to header names, when it can be used: the result (the same message, "
        "key and headers) goes there instead of the results topic.",
        "messages": {"Message": {"$ref": f"#/components/messages/{result_name}"}},
        "servers": document["channels"][RESULTS_CHANNEL]["servers"],
    }
    document["operations"][REQUESTS_CHANNEL]["reply"] = {
        "address": {
            "location": f"$message.header#/{REPLY_TO_HEADER}",
            "description": "The request's reply_to header; without a usable one the result goes to the results topic "
            "(operation `results`) with reply_to_error saying why.",
        },
        "channel": {"$ref": f"#/channels/{REPLY_CHANNEL}"},
        "messages": [{"$ref": f"#/channels/{REPLY_CHANNEL}/messages/Message"}],
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the processor's topics, for ProcessorSettings' defaults."""
    defaults = settings_defaults()
    with warnings.catch_warnings():
        # FastStream warns, and goes on, when two schemas or channels share a name: one would be
        # lost from the document.
        warnings.filterwarnings("error", message="Overwrit")
        document: dict[str, Any] = documentation_app(defaults=defaults).schema.to_specification().to_jsonable()
    _unwrap_payloads(document)
    _add_message_extras(document, defaults=defaults)
    _add_topic_details(document, defaults=defaults)
    _add_reply(document)
    return document


def render(document: dict[str, Any]) -> str:
    """The committed form: sorted keys, so the same document is always the same bytes."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(asyncapi_document()), encoding="utf-8")
    print(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
