"""Every record accounted for: the hostile records that once lost or stalled requests, one
named test each, through the real broker to a real processor; the offset floor; and the
compacted reply topic holding each reference's real answer after retries and kill -9."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.storage.audit import audit_ledger
from schemas.errors import ErrorCode
from schemas.results import DIFFERENT_REQUEST, SAME_REQUEST

from .support import encoded, produce_raw, project_setup, submit_all

pytestmark = pytest.mark.e2e


def transfer(project: str, reference: str, amount: str = "1", *, source: str = "A", target: str = "B") -> dict:
    return {"type": "transaction.run", "project_id": project, "reference_id": reference, "operations": [
        {"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": amount}]}


async def read_topic(*, topology, topic: str, until, timeout: float = 30.0) -> list:
    """Records of `topic` from the beginning until `until(records)` holds (or the timeout)."""
    consumer = AIOKafkaConsumer(
        topic, **topology.kafka.options(), group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=8_000_000
    )
    await consumer.start()
    found: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


def answers_by_source(records: list) -> dict[tuple[int, int], object]:
    """(partition, offset) of the request -> the record that answered it."""
    found = {}
    for record in records:
        headers = dict(record.headers)
        found[(int(headers["source_partition"]), int(headers["source_offset"]))] = record
    return found


async def produce_at(topology, records: list[tuple[bytes | None, bytes | None, list]], *, partition: int, sign: bool = True) -> list[tuple[int, int]]:
    """Send (key, value, headers) records to one partition, each signed with the topology's
    operator key (unless `sign=False`); return their (partition, offset)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**topology.client_kafka.options(), max_request_size=3_000_000)
    await producer.start()
    try:
        def signed(value: bytes | None, headers: list) -> list:
            return [*headers, *topology.signing_key.headers(value)] if sign and value is not None else headers

        futures = [
            await producer.send(topology.requests_topic, key=key, value=value, headers=signed(value, headers), partition=partition)
            for key, value, headers in records
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def answered(topology, sources: list[tuple[int, int]], *, timeout: float = 30.0) -> tuple[dict, dict]:
    """The result and the dead letter (if any) for each source, once every source has one."""
    wanted = set(sources)
    results: dict = {}
    letters: dict = {}

    async def read(topic: str, into: dict) -> None:
        def done(records: list) -> bool:
            into.update(answers_by_source(records))
            return wanted <= results.keys() | letters.keys()

        await read_topic(topology=topology, topic=topic, until=done, timeout=timeout)

    await asyncio.gather(read(topology.results_topic, results), read(topology.dlq_topic, letters))
    missing = wanted - results.keys() - letters.keys()
    assert not missing, f"records never answered nor dead-lettered: {sorted(missing)}"
    return results, letters


async def poison_then_probe(topology, project: str, poison: list[tuple[bytes | None, bytes | None, list]], *, partition: int = 0):
    """Send poison on one partition followed by a valid request there and on another partition;
    both valid ones must be applied: the partition and its neighbours keep flowing."""
    probe_here = (b"k", json.dumps(transfer(project, f"probe-here-{uuid.uuid4().hex[:6]}")).encode(), [])
    probe_there = (b"k", json.dumps(transfer(project, f"probe-there-{uuid.uuid4().hex[:6]}")).encode(), [])
    sources = await produce_at(topology, [*poison, probe_here], partition=partition)
    sources += await produce_at(topology, [probe_there], partition=(partition + 1) % topology.partitions)
    results, letters = await answered(topology, sources)
    for probe in (sources[-2], sources[-1]):
        assert json.loads(results[probe].value)["status"] == "Completed", results[probe].value
    return sources[:-2], results, letters


@pytest.fixture
async def funded(processors, client):
    processors()
    project = f"hostile-{uuid.uuid4().hex[:8]}"
    await submit_all(client, project_setup(project, ["A", "B"], fund="1000"))
    return project


async def test_a_binary_header_value_loses_nothing_of_its_batch(funded, topology):
    project = funded
    batch = [(b"k", json.dumps(transfer(project, f"bin-{i}")).encode(), []) for i in range(20)]
    batch[7] = (b"k", json.dumps(transfer(project, "bin-7")).encode(), [("correlation_id", b"\xff\xfe\x00"), ("traceparent", bytes(range(256)))])
    sources, results, letters = await poison_then_probe(topology, project, batch)
    assert not letters
    assert all(json.loads(results[s].value)["status"] == "Completed" for s in sources)
    assert dict(results[sources[7]].headers)["correlation_id"] == b"\xff\xfe\x00", "echoed as sent, never decoded"


async def test_a_reply_to_naming_a_missing_or_invalid_topic_is_answered_on_the_results_topic(funded, topology):
    project = funded
    reply_tos = [b"no.such.topic." + uuid.uuid4().hex.encode(), b"a/b", b"x" * 300, b"\xff\xfe", topology.requests_topic.encode()]
    poison = [(b"k", json.dumps(transfer(project, f"reply-{i}")).encode(), [("reply_to", name)]) for i, name in enumerate(reply_tos)]
    sources, results, letters = await poison_then_probe(topology, project, poison)
    assert not letters
    for source in sources:
        headers = dict(results[source].headers)
        assert json.loads(results[source].value)["status"] == "Completed"
        assert headers["reply_to_error"], headers
    assert b"does not exist" in dict(results[sources[0]].headers)["reply_to_error"]
    assert b"own topic" in dict(results[sources[4]].headers)["reply_to_error"]


async def test_lone_surrogates_in_reference_project_or_type_are_answered_or_dead_lettered(funded, topology):
    project = funded

    def raw(reference: str, project_id: str, kind: str) -> bytes:
        # Written by hand: a JSON encoder would refuse to produce a lone surrogate escape.
        return (f'{{"type": "{kind}", "project_id": "{project_id}", "reference_id": "{reference}", "operations": '
                '[{"type": "Issue", "wallet_id": "A", "amount": "1"}]}').encode()

    poison = [
        (b"k", raw("sur\\ud800ref", project, "transaction.run"), []),
        (b"k", raw("sur-project", "p\\ud800", "transaction.run"), []),
        (b"k", raw("sur-type", project, "transaction.run\\udfff"), []),
        (b"k", raw("sur-nul", project, "transaction.run\\u0000"), []),
        (b"k", raw("nul\\u0000ref", project, "transaction.run"), []),  # must never reach PostgreSQL as text
    ]
    sources, results, letters = await poison_then_probe(topology, project, poison)
    assert b"surrogate" in dict(letters[sources[0]].headers)["dlq_reason"]
    for source, reference in zip(sources[1:4], ("sur-project", "sur-type", "sur-nul"), strict=True):
        result = json.loads(results[source].value)
        assert (result["reference_id"], result["error"]["code"]) == (reference, "ValidationError"), result
    assert json.loads(results[sources[1]].value)["project_id"] is None, "an invalid project ID is not echoed"
    assert results[sources[2]].key == f"{project}/sur-type".encode()
    nul = json.loads(results[sources[4]].value)
    assert (nul["reference_id"], nul["error"]["code"]) == ("nul\x00ref", "ValidationError")


async def test_deeply_nested_json_is_answered_or_dead_lettered(funded, topology):
    project = funded
    deep_field = json.dumps({**transfer(project, "deep-field"), "description": "PLACEHOLDER"}).encode().replace(
        b'"PLACEHOLDER"', b"[" * 2500 + b"]" * 2500
    )
    deep_amount = json.dumps(transfer(project, "deep-amount")).encode().replace(b'"1"', b"{\"a\":" * 60 + b"1" + b"}" * 60)
    deep_top = b"[" * 5000 + b"]" * 5000
    sources, results, letters = await poison_then_probe(topology, project, [(b"k", deep_field, []), (b"k", deep_amount, []), (b"k", deep_top, [])])
    assert b"nested deeper" in dict(letters[sources[0]].headers)["dlq_reason"]
    answer = json.loads(results[sources[1]].value)
    assert (answer["reference_id"], answer["error"]["code"]) == ("deep-amount", "ValidationError")
    assert "nested deeper than 32" in answer["error"]["message"]
    assert sources[2] in letters


async def test_an_integer_literal_of_more_than_4300_digits_is_answered(funded, topology):
    project = funded
    value = json.dumps(transfer(project, "huge-int")).encode().replace(b'"1"', b"9" * 5000)
    sources, results, _letters = await poison_then_probe(topology, project, [(b"k", value, [])])
    answer = json.loads(results[sources[0]].value)
    assert answer["error"]["code"] == "ValidationError" and "decimal strings or integers" in answer["error"]["message"], answer


async def test_an_empty_reference_id_is_answered_with_validation_error(funded, topology):
    project = funded
    sources, results, letters = await poison_then_probe(topology, project, [(b"k", json.dumps(transfer(project, "")).encode(), [])])
    assert not letters
    answer = json.loads(results[sources[0]].value)
    assert (answer["reference_id"], answer["error"]["code"]) == ("", "ValidationError")
    assert results[sources[0]].key == f"{project}/".encode()


async def test_a_kafka_offset_ahead_of_postgresql_is_not_followed(processors, client, topology, db):
    first = processors("first")
    project = f"floor-{uuid.uuid4().hex[:8]}"
    await submit_all(client, project_setup(project, ["A", "B"], fund="10"))
    first.stop()
    # While no processor runs: requests arrive, and someone commits the group past them.
    sources = await produce_at(topology, [(b"k", json.dumps(transfer(project, f"skipped-{i}")).encode(), []) for i in range(3)], partition=0)
    intruder = AIOKafkaConsumer(**topology.kafka.options(), group_id=topology.consumer_group, enable_auto_commit=False)
    await intruder.start()
    try:
        tp = TopicPartition(topology.requests_topic, 0)
        intruder.assign([tp])
        await intruder.commit({tp: sources[-1][1] + 1})
    finally:
        await intruder.stop()
    resumed = processors("resumed")
    results, _letters = await answered(topology, sources)
    assert all(json.loads(results[s].value)["status"] == "Completed" for s in sources)
    assert "ahead of PostgreSQL" in resumed.log()
    with db.connect() as connection:
        balance = connection.execute(sa.text("SELECT balance FROM wallets WHERE project_id = :p AND wallet_id = 'B'"), {"p": project}).scalar()
    assert balance == 1300


async def test_the_compacted_view_is_each_references_real_answer_after_retries_and_kill_9(processors, client, topology, db):
    """Read the results topic as compaction would (the last record per key): it must equal the
    answer stored with each spent reference, whatever retries, conflicts and crashes came."""
    small_batches = {"CLOUDWALLET_BATCH_MAX_RECORDS": "25"}
    first = processors("a", extra_env=small_batches)
    project = f"compact-{uuid.uuid4().hex[:8]}"
    await submit_all(client, project_setup(project, ["A", "B", "C"], fund="100"))
    requests = [transfer(project, f"c-{i}", "3", source="ABC"[i % 3], target="ABC"[(i + 1) % 3]) for i in range(240)]
    retries = [requests[i] for i in range(0, 240, 2)]  # exact retries
    conflicting = [{**requests[i], "operations": [{**requests[i]["operations"][0], "amount": "2"}]} for i in range(1, 240, 8)]
    invalid = [{**requests[i], "operations": "nope"} for i in range(3, 240, 16)]
    await produce_raw(topology, [encoded(r) for r in requests[:120]])
    await asyncio.sleep(0.3)
    first.kill()  # mid-stream
    await produce_raw(topology, [encoded(r) for r in requests[120:]] + [encoded(r) for r in retries + conflicting])
    await produce_raw(topology, [(encoded(requests[i])[0], json.dumps(r).encode(), None) for i, r in zip(range(3, 240, 16), invalid, strict=True)])
    # Killed after committing to PostgreSQL (results not out), then after publishing (Kafka not committed).
    for name, point in (("b", "after_db_commit"), ("c", "after_publish")):
        env = {**small_batches, "CLOUDWALLET_FAILPOINT": point, "CLOUDWALLET_FAILPOINT_HITS": "2"}
        processors(name, extra_env=env, wait=False).wait_dead(timeout=120)
    processors("d")
    references = {f"{project}/{r['reference_id']}".encode() for r in requests}
    expected_count = len(requests) + len(retries) + len(conflicting) + len(invalid)

    def complete(records: list) -> bool:
        mine = [r for r in records if r.key in references]
        return len(mine) >= expected_count and references <= {r.key for r in mine}

    records = await read_topic(topology=topology, topic=topology.results_topic, until=complete, timeout=120)
    last: dict[bytes, bytes] = {}
    kinds: dict[bytes, set] = {}
    for record in records:
        if record.key in references:
            last[record.key] = record.value
            kinds.setdefault(record.key, set()).add(dict(record.headers).get("duplicate"))
    assert last.keys() == references
    with db.connect() as connection:
        stored = dict(connection.execute(
            sa.text("SELECT project_id || '/' || reference_id, result FROM processed_requests WHERE project_id = :p AND reference_id LIKE 'c-%'"),
            {"p": project},
        ).all())
    for key, value in last.items():
        assert json.loads(value) == stored[key.decode()], f"{key!r}: the compacted view is not the stored answer"
    assert not [k for k, v in last.items() if json.loads(v)["error"] and json.loads(v)["error"]["code"] == ErrorCode.DuplicateReferenceId.value]
    flagged = {k for k, ks in kinds.items() if DIFFERENT_REQUEST.encode() in ks}
    assert {f"{project}/{r['reference_id']}".encode() for r in conflicting + invalid} <= flagged
    assert any(SAME_REQUEST.encode() in ks for ks in kinds.values())
    assert audit_ledger(db, project_id=project).ok


async def test_a_header_key_that_is_not_utf8_neither_stalls_nor_loses_the_partition(funded, topology, tmp_path):
    """aiokafka decodes header keys strictly and used to fail every poll on such a record."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    project = funded
    values = tmp_path / "values.jsonl"
    values.write_text("\n".join(json.dumps(transfer(project, f"raw-key-{i}")) for i in range(3)) + "\n")
    script = Path(__file__).with_name("produce_with_raw_header_key.py")
    done = subprocess.run(
        [sys.executable, str(script), topology.requests_topic, "0", str(values)],
        env={**os.environ, **topology.client_kafka.environment(), "CLOUDWALLET_SIGNING_KEY": topology.signing_key.token(), "AIOKAFKA_NO_EXTENSIONS": "1"}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    sources = [(0, int(offset)) for offset in done.stdout.split()]
    _poisoned, results, _letters = await poison_then_probe(topology, project, [])
    results, letters = await answered(topology, sources)
    assert not letters
    assert all(json.loads(results[s].value)["status"] == "Completed" for s in sources)
