"""docs/asyncapi.json is the document the code generates, and it describes the contract: the three
topics of ProcessorSettings' defaults, every request type, the result, and every header."""

from __future__ import annotations

import json
import re
from pathlib import Path
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema
from pydantic import TypeAdapter

from processor.service.batch import DeadLetter, Reply
from processor.service.records import SourceRecord
from processor.settings import ProcessorSettings
from processor.stream.asyncapi import USAGE, asyncapi_document, render
from processor.stream.outbox import CORRELATION_HEADER, MAX_DLQ_KEY_BYTES, REPLY_TO_HEADER, dead_letter_message, result_message
from schemas.requests import REQUEST_TYPES
from schemas.results import Result
from schemas.signing import key_for
from schemas.states import Status

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
SCHEMAS = "#/components/schemas/"

TRACE_HEADERS = {"traceparent", "tracestate"}
REQUEST_HEADERS = {"signature_key_id", "signature", "correlation_id", "reply_to"} | TRACE_HEADERS
RESULT_HEADERS = {"request_type", "source_topic", "source_partition", "source_offset", "correlation_id", "duplicate", "reply_to_error"} | TRACE_HEADERS
DEAD_LETTER_HEADERS = {"dlq_reason", "source_topic", "source_partition", "source_offset"} | TRACE_HEADERS


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def resolve(document: dict[str, Any], *, ref: str) -> Any:
    """The object a local `$ref` points at (JSON pointer, percent-encoded as FastStream writes it)."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return node


def message_on(document: dict[str, Any], *, address: str, action: str) -> dict[str, Any]:
    """The one message of the operation that `action`s on the channel of `address`."""
    found = []
    for operation in document["operations"].values():
        channel = resolve(document, ref=operation["channel"]["$ref"])
        if channel.get("address") == address and operation["action"] == action:
            found += [resolve(document, ref=reference["$ref"]) for reference in operation["messages"]]
    assert len(found) == 1, f"one {action} operation with one message on {address!r}, found {len(found)}"
    message = found[0]
    return resolve(document, ref=message["$ref"]) if "$ref" in message else message


def defaults() -> dict[str, str]:
    fields = ProcessorSettings.model_fields
    return {name: fields[name].default for name in ("requests_topic", "results_topic", "dlq_topic")}


def as_asyncapi(schema: Any) -> Any:
    """A pydantic JSON Schema as the document holds it: refs under components/schemas, and a
    discriminator as its property name (AsyncAPI's Schema Object has it as a string)."""
    if isinstance(schema, list):
        return [as_asyncapi(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: as_asyncapi(value) for key, value in schema.items() if key != "$defs"}
    if isinstance(converted.get("discriminator"), dict):
        converted["discriminator"] = converted["discriminator"]["propertyName"]
    return converted


def documented(headers: dict[str, Any], *, name: str) -> bool:
    return name in headers.get("properties", {}) or any(re.search(pattern, name) for pattern in headers.get("patternProperties", {}))


# --- (a) not stale ---------------------------------------------------------------------------


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(asyncapi_document()), f"docs/asyncapi.json is stale: run `{USAGE}` (or make asyncapi)"


def test_faststream_reads_the_committed_document(committed: dict[str, Any]) -> None:
    # What `faststream docs serve docs/asyncapi.json` parses before it serves the page.
    parsed = ApplicationSchema.model_validate(committed)
    assert parsed.asyncapi == "3.0.0" and parsed.components is not None and parsed.components.messages


# --- (b) the topics ------------------------------------------------------------------------


def test_the_document_names_the_three_default_topics_with_their_directions(committed: dict[str, Any]) -> None:
    topics = defaults()
    addresses = {channel.get("address") for channel in committed["channels"].values()}
    assert set(topics.values()) <= addresses
    assert message_on(committed, address=topics["requests_topic"], action="receive")
    assert message_on(committed, address=topics["results_topic"], action="send")
    assert message_on(committed, address=topics["dlq_topic"], action="send")


# --- (c) the schemas -------------------------------------------------------------------------


def test_every_request_type_is_in_the_request_message_as_its_model_says(committed: dict[str, Any]) -> None:
    message = message_on(committed, address=defaults()["requests_topic"], action="receive")
    union = resolve(committed, ref=message["payload"]["$ref"])
    members = [resolve(committed, ref=member["$ref"]) for member in union["oneOf"]]
    assert {member["properties"]["type"]["const"] for member in members} == set(REQUEST_TYPES)
    schemas = committed["components"]["schemas"]
    for request_type, model in REQUEST_TYPES.items():
        expected = as_asyncapi(model.model_json_schema(ref_template=SCHEMAS + "{model}"))
        assert schemas[model.__name__] == expected, f"{request_type}: the document's {model.__name__} is not the model's"


def test_the_result_message_is_the_result_model(committed: dict[str, Any]) -> None:
    message = message_on(committed, address=defaults()["results_topic"], action="send")
    assert message["payload"] == {"$ref": SCHEMAS + "Result"}
    result = TypeAdapter(Result).json_schema(mode="serialization", ref_template=SCHEMAS + "{model}")
    schemas = committed["components"]["schemas"]
    assert set(schemas["Result"]["properties"]) == set(Result.model_fields)
    for name, schema in result["$defs"].items():  # Result and every view it nests
        assert schemas[name] == as_asyncapi(schema), f"the document's {name} is not the model's"


# --- (d) the headers -------------------------------------------------------------------------


def test_every_header_of_the_contract_is_documented_on_its_message(committed: dict[str, Any]) -> None:
    topics = defaults()
    for address, action, names in (
        (topics["requests_topic"], "receive", REQUEST_HEADERS),
        (topics["results_topic"], "send", RESULT_HEADERS),
        (topics["dlq_topic"], "send", DEAD_LETTER_HEADERS | {"original.correlation_id"}),
    ):
        headers = message_on(committed, address=address, action=action)["headers"]
        missing = sorted(name for name in names if not documented(headers, name=name))
        assert not missing, f"{address}: headers not documented: {missing}"


def test_every_header_the_code_writes_is_documented(committed: dict[str, Any]) -> None:
    # The most a message carries: a signed request (the headers the processor reads from it), its
    # result as a duplicate on the results topic for want of its reply_to, a dead letter cut everywhere.
    source = SourceRecord(
        topic="requests", partition=0, offset=7, key=b"k" * (MAX_DLQ_KEY_BYTES + 1), value=b"v" * 100,
        headers=(("correlation_id", b"c"), *((f"h{i}", b"x" * 1024) for i in range(100))),
    )
    result = Result(reference_id="r", project_id="p", type="transaction.run", status=Status.Completed, processed_at=datetime(2026, 1, 1, tzinfo=UTC))
    reply = Reply(record=source, result=result, key=b"p/r", value=b"{}", duplicate="same-request")
    letter = DeadLetter(record=source, reason="why")
    signed = key_for(b"m" * 32, "0123456789abcdef").headers(b"{}")
    traced = (("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("tracestate", b"a=b"))  # as tracing.py adds them
    topics = defaults()
    written = (
        (topics["requests_topic"], "receive", {name for name, _ in signed} | {CORRELATION_HEADER, REPLY_TO_HEADER} | {name for name, _ in traced}),
        (topics["results_topic"], "send", {name for name, _ in result_message(reply, topic="results", reply_to_error="why", trace=traced).message[3]}),
        (topics["dlq_topic"], "send", {name for name, _ in dead_letter_message(letter, topic="dlq", max_value_bytes=10, trace=traced).message[3]}),
    )
    for address, action, names in written:
        headers = message_on(committed, address=address, action=action)["headers"]
        missing = sorted(name for name in names if not documented(headers, name=name))
        assert not missing, f"{address}: headers the code writes but the document does not name: {missing}"
