"""What the processor publishes, as Kafka messages: results (to the results topic or a valid
`reply_to`) and dead letters. Every header of the contract is set here (docs/contract.md).

Everything taken from the request record is hostile: header values are echoed as raw bytes,
never decoded; `reply_to` must be a valid topic name other than the requests and DLQ topics, and
one that exists, else the result goes to the results topic with a `reply_to_error` header; a
dead letter's value, key and copied headers are bounded so the letter always fits the DLQ topic.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from processor.service.batch import DeadLetter, Reply
from processor.settings import TOPIC_NAME
from processor.service.records import SourceRecord
from processor.stream.publishing import Header, Message
from schemas.limits import MAX_CORRELATION_ID_BYTES
from schemas.results import DUPLICATE_HEADER

CORRELATION_HEADER = "correlation_id"
REPLY_TO_HEADER = "reply_to"
# A dead letter keeps at most this much of the record's key and of its headers (values beyond
# its value limit are cut too, with the original's size and SHA-256 in headers).
MAX_DLQ_KEY_BYTES = 16 * 1024
MAX_DLQ_HEADER_BYTES = 64 * 1024
ORIGINAL_HEADER_PREFIX = "original."
HEADER_OVERHEAD_BYTES = 10
# How long a reply_to topic found to exist (or refused) is trusted before it is looked up again.
REPLY_TOPIC_TTL_S = 60.0
REFUSED_REPLY_TOPIC_TTL_S = 10.0


def source_headers(record: SourceRecord) -> list[Header]:
    """The request record an answer is for: every result and dead letter carries these."""
    return [
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


@dataclass(slots=True, frozen=True, kw_only=True)
class Outgoing:
    """One message to publish, and what it answers (to degrade it if it cannot be published)."""

    message: Message
    reply: Reply | None = None
    letter: DeadLetter | None = None
    minimal: bool = False  # a dead letter already cut down to its reason and source
    # `traceparent` (and `tracestate`) of the processor's span for the record, when it was
    # traced (processor/stream/tracing.py): kept by what the message degrades into.
    trace: tuple[Header, ...] = ()


def result_message(reply: Reply, *, topic: str, reply_to_error: str | None = None, trace: tuple[Header, ...] = ()) -> Outgoing:
    record = reply.record
    headers: list[Header] = [("request_type", reply.result.type.encode()), *source_headers(record), *trace]
    correlation_id = record.header_bytes(CORRELATION_HEADER)
    if correlation_id is not None and len(correlation_id) <= MAX_CORRELATION_ID_BYTES:
        headers.append((CORRELATION_HEADER, correlation_id))
    if reply.duplicate is not None:
        headers.append((DUPLICATE_HEADER, reply.duplicate.encode()))
    if reply_to_error is not None:
        headers.append(("reply_to_error", reply_to_error.encode()))
    return Outgoing(message=(topic, reply.key, reply.value, headers), reply=reply, trace=trace)


def dead_letter_message(
    letter: DeadLetter, *, topic: str, max_value_bytes: int, minimal: bool = False, trace: tuple[Header, ...] = ()
) -> Outgoing:
    """The record as it came (bounded), with why it could not be answered. `minimal`: only the
    reason and the source (for a letter the DLQ refused as it was)."""
    record = letter.record
    headers: list[Header] = [("dlq_reason", letter.reason.encode()), *source_headers(record), *trace]
    if minimal:
        return Outgoing(message=(topic, None, b"", headers), letter=letter, minimal=True, trace=trace)
    value = record.value or b""
    if len(value) > max_value_bytes:
        headers += [("dlq_value_bytes", str(len(value)).encode()), ("dlq_value_sha256", hashlib.sha256(value).hexdigest().encode())]
        value = value[:max_value_bytes]
    key = record.key
    if key is not None and len(key) > MAX_DLQ_KEY_BYTES:
        headers.append(("dlq_key_bytes", str(len(key)).encode()))
        key = key[:MAX_DLQ_KEY_BYTES]
    copied, size = 0, 0
    for name, header_value in record.headers:
        copied_name = ORIGINAL_HEADER_PREFIX + name
        # Bytes as written: the name's UTF-8, the value, and up to 10 bytes of varint lengths.
        size += len(copied_name.encode()) + len(header_value or b"") + HEADER_OVERHEAD_BYTES
        if size > MAX_DLQ_HEADER_BYTES:
            break
        headers.append((copied_name, header_value or b""))
        copied += 1
    if copied < len(record.headers):
        headers.append(("dlq_headers_dropped", str(len(record.headers) - copied).encode()))
    return Outgoing(message=(topic, key, value, headers), letter=letter, trace=trace)


class ReplyTargets:
    """Which `reply_to` topics results may go to: looked up at most once per batch, and what was
    found (a topic exists, or is refused) trusted for a while, so that a stream of bad
    `reply_to` values costs no metadata request per batch."""

    def __init__(self, *, producer: AIOKafkaProducer, forbidden: Iterable[str]) -> None:
        self._producer = producer
        self._forbidden = frozenset(forbidden)
        self._exists_until: dict[str, float] = {}
        self._refused: dict[str, tuple[float, str]] = {}  # name -> (until, why)

    async def refusals(self, raw_names: Iterable[bytes]) -> dict[bytes, str]:
        """For each `reply_to` value that cannot be used, why (the others are usable)."""
        refused: dict[bytes, str] = {}
        unknown: dict[bytes, str] = {}
        now = time.monotonic()
        for raw in set(raw_names):
            reason, name = _invalid_reply_to(raw, forbidden=self._forbidden)
            known = self._refused.get(name)
            if reason is None and known is not None and known[0] >= now:
                reason = known[1]
            if reason is not None:
                refused[raw] = reason
            elif self._exists_until.get(name, 0.0) < now:
                unknown[raw] = name
        if unknown:
            try:
                cluster = await self._producer.client.fetch_all_metadata()
            except Exception as error:  # the broker did not answer: an outage, retried
                raise KafkaConnectionError(f"could not look up reply_to topics: {error}") from error
            existing = cluster.topics()
            for raw, name in unknown.items():
                if name in existing:
                    self._exists_until[name] = now + REPLY_TOPIC_TTL_S
                else:
                    refused[raw] = self.refuse(name, "does not exist (or is not visible to the processor)")
        return refused

    def refuse(self, name: str, why: str) -> str:
        """Remember that `name` cannot be used for a while (the broker refused it, or it is gone)."""
        reason = f"topic {name!r} {why}"
        self._exists_until.pop(name, None)
        self._refused[name] = (time.monotonic() + REFUSED_REPLY_TOPIC_TTL_S, reason)
        return reason

    def forget(self, names: Iterable[str]) -> None:
        """Look `names` up again next time (a publish to one of them found it gone)."""
        for name in names:
            self._exists_until.pop(name, None)


def _invalid_reply_to(raw: bytes, *, forbidden: frozenset[str]) -> tuple[str | None, str]:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "reply_to is not UTF-8 text", ""
    if not TOPIC_NAME.fullmatch(name):
        return "reply_to is not a valid topic name (1-249 of letters, digits, '.', '_', '-')", name
    if name in forbidden:
        return f"reply_to names the processor's own topic {name!r}", name
    return None, name
