"""What the processor publishes for a record: headers as the contract lists them, dead letters
bounded, hostile header values copied as bytes (no broker)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from processor.service.batch import DeadLetter, Reply
from processor.service.records import SourceRecord
from processor.stream.outbox import MAX_DLQ_HEADER_BYTES, MAX_DLQ_KEY_BYTES, dead_letter_message, result_message
from schemas.results import Result
from schemas.states import Status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(*, value: bytes = b"{}", key: bytes | None = b"k", headers: tuple = ()) -> SourceRecord:
    return SourceRecord(topic="requests", partition=3, offset=41, key=key, value=value, headers=headers)


def test_a_result_names_its_source_and_echoes_a_binary_correlation_id_as_sent():
    source = record(headers=(("correlation_id", b"\xff\xfe\x00"), ("other", None)))
    result = Result(reference_id="r", project_id="p", type="transaction.run", status=Status.Completed, processed_at=NOW)
    reply = Reply(record=source, result=result, key=b"p/r", value=b"{...}", duplicate="same-request")
    topic, key, value, headers = result_message(reply, topic="results", reply_to_error="no such topic").message
    found = dict(headers)
    assert (topic, key, value) == ("results", b"p/r", b"{...}")
    assert (found["source_topic"], found["source_partition"], found["source_offset"]) == (b"requests", b"3", b"41")
    assert found["correlation_id"] == b"\xff\xfe\x00"
    assert found["duplicate"] == b"same-request" and found["reply_to_error"] == b"no such topic"


def test_an_overlong_correlation_id_is_not_echoed():
    source = record(headers=(("correlation_id", b"x" * 1025),))
    result = Result(reference_id="r", project_id="p", type="t", status=Status.Completed, processed_at=NOW)
    headers = dict(result_message(Reply(record=source, result=result, key=b"k", value=b"v"), topic="results").message[3])
    assert "correlation_id" not in headers


def test_a_dead_letter_is_bounded_and_says_what_it_cut():
    value = b"v" * 5000
    headers = tuple((f"h{i}", b"x" * 1000) for i in range(100))  # ~100 KiB of headers
    letter = DeadLetter(record=record(value=value, key=b"k" * (MAX_DLQ_KEY_BYTES + 1), headers=headers), reason="too large")
    topic, key, cut, out = dead_letter_message(letter, topic="dlq", max_value_bytes=1000).message
    found = dict(out)
    assert topic == "dlq" and cut == value[:1000] and len(key) == MAX_DLQ_KEY_BYTES
    assert found["dlq_value_bytes"] == b"5000" and found["dlq_value_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert found["dlq_key_bytes"] == str(MAX_DLQ_KEY_BYTES + 1).encode()
    copied = [name for name, _ in out if name.startswith("original.")]
    assert 0 < len(copied) < 100 and found["dlq_headers_dropped"] == str(100 - len(copied)).encode()
    assert sum(len(v) for name, v in out if name.startswith("original.")) <= MAX_DLQ_HEADER_BYTES
    assert found["dlq_reason"] == b"too large" and found["source_offset"] == b"41"


def test_a_minimal_dead_letter_keeps_only_the_reason_and_the_source():
    letter = DeadLetter(record=record(value=b"x" * 100, headers=(("a", b"b"),)), reason="refused")
    topic, key, value, headers = dead_letter_message(letter, topic="dlq", max_value_bytes=10, minimal=True).message
    assert (key, value) == (None, b"")
    assert [name for name, _ in headers] == ["dlq_reason", "source_topic", "source_partition", "source_offset"]


def test_every_dead_letter_reason_the_decoder_gives_has_its_own_metric_kind() -> None:
    from processor.service.records import decode
    from processor.stream.metrics import dead_letter_kind

    def reason(value: bytes | None, *, max_bytes: int = 1 << 20) -> str:
        decoded = decode(SourceRecord(topic="t", partition=0, offset=0, key=None, value=value), max_bytes=max_bytes, now=datetime.now(UTC))
        assert decoded.dlq_reason is not None
        return decoded.dlq_reason

    deep = b"[" * 200_000 + b"]" * 200_000  # beyond what the parser recurses into
    cases = {b"": "empty", b"\xff\xfe": "not_json", b"{" : "not_json", b"[1]": "not_an_object", deep: "too_deep", b'{"reference_id": 7}': "unanswerable"}
    assert {value: dead_letter_kind(reason(value)) for value in cases} == cases
    assert dead_letter_kind(reason(b"x" * 2000, max_bytes=1024)) == "too_large"


def test_a_revoked_partition_leaves_no_stale_lag():
    from prometheus_client import REGISTRY

    from processor.stream.metrics import forget_lag, set_lag

    def lag(partition: int) -> float | None:
        return REGISTRY.get_sample_value("cloudwallet_consumer_lag_records", {"partition": str(partition)})

    set_lag([(901, 5), (902, -3)])
    assert (lag(901), lag(902)) == (5.0, 0.0)  # a high watermark behind the batch's offset reads as caught up
    forget_lag([901, 903])  # 903 was never reported here
    assert (lag(901), lag(902)) == (None, 0.0)
