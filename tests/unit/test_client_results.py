"""How a client reads a results-topic record (a `duplicate` header turns the original's value
into the seed API's DuplicateReferenceId answer), and how `ResultsFollower` matches records to
the requests waiting for them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from processor.client import read_result
from processor.client.connection import KafkaConnection
from processor.client.results_topic import ResultsFollower, result_status
from schemas.errors import ErrorCode
from schemas.results import Result, result_key
from schemas.states import Status

ORIGINAL = Result(reference_id="r", project_id="p", type="wallet.open", status=Status.Completed, processed_at=datetime(2026, 1, 1, tzinfo=UTC))


@dataclass
class Record:
    value: bytes
    headers: list
    timestamp: int = 1_767_225_600_000


def test_a_plain_record_is_the_result_itself():
    assert read_result(Record(value=ORIGINAL.model_dump_json().encode(), headers=[])) == ORIGINAL


@pytest.mark.parametrize(("kind", "says_different"), [(b"same-request", False), (b"different-request", True)])
def test_a_duplicate_record_reads_as_duplicate_reference_id_with_the_original(kind, says_different):
    record = Record(value=ORIGINAL.model_dump_json().encode(), headers=[("request_type", b"transaction.run"), ("duplicate", kind)])
    result = read_result(record)
    assert result.status == Status.Failed and result.error.code == ErrorCode.DuplicateReferenceId
    assert result.original == ORIGINAL and result.type == "transaction.run"
    assert ("different request" in result.error.message) is says_different
    assert result.processed_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unknown_duplicate_kind_is_refused():
    with pytest.raises(ValueError, match="duplicate header"):
        read_result(Record(value=ORIGINAL.model_dump_json().encode(), headers=[("duplicate", b"maybe")]))


# ------------------------------------------------------------------ ResultsFollower's matching
# (no broker: records are handed to the follower as its poll loop would hand them)

KAFKA = KafkaConnection(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT")


@dataclass
class Keyed:
    key: bytes
    value: bytes = b"{}"
    headers: tuple = ()


@pytest.fixture
async def follower():
    """Makes followers (their consumers never started) and closes them after the test."""
    made: list[ResultsFollower] = []

    def make(*, shared: bool = False) -> tuple[ResultsFollower, list]:
        seen: list = []
        made.append(ResultsFollower(kafka=KAFKA, topic="results", on_result=lambda tag, waited, record: seen.append((tag, record.value)), shared=shared))
        return made[-1], seen

    yield make
    for results in made:
        await results.stop()


async def test_each_result_answers_the_oldest_request_pending_under_its_key(follower):
    results, seen = follower()
    key = result_key(project_id="p", reference_id="r")
    results.expect(key, tag="first")
    results.expect(key, tag="second")
    results.expect(result_key(project_id="p", reference_id="other"), tag="other")
    results._resolve(Keyed(key=b"p/r", value=b"1"), now=0.0)
    results._resolve(Keyed(key=b"someone-else/r"), now=0.0)  # nobody here waits for it: skipped
    assert seen == [("first", b"1")] and results.count == 2 and results.answered == 1
    results._resolve(Keyed(key=b"p/r", value=b"2"), now=0.0)
    assert seen[-1] == ("second", b"2") and results.count == 1
    assert results.take_all() == ["other"] and results.count == 0


async def test_shared_answers_every_request_pending_under_the_key(follower):
    results, seen = follower(shared=True)
    results.expect("p/r", tag="a")
    results.expect("p/r", tag="b")
    results._resolve(Keyed(key=b"p/r", value=b"x"), now=0.0)
    assert seen == [("a", b"x"), ("b", b"x")] and results.count == 0


async def test_take_and_forget_stop_waiting_for_one_request(follower):
    results, seen = follower()
    first, second = object(), object()
    results.expect("p/r", tag=first)
    results.expect("p/r", tag=second)
    results.forget("p/r", tag=second)
    assert results.count == 1
    results.forget("p/r", tag=second)  # already forgotten: nothing changes
    assert results.count == 1
    assert results.take("p/r").tag is first and results.take("p/r") is None and results.count == 0


async def test_the_window_opens_as_results_come_and_drain_gives_up_when_they_stop(follower):
    results, _ = follower()
    for i in range(3):
        results.expect(f"p/{i}", tag=i)
    waiting = asyncio.create_task(results.wait_below(3))
    await asyncio.sleep(0)
    assert not waiting.done()
    results._resolve(Keyed(key=b"p/0"), now=0.0)
    await asyncio.wait_for(waiting, 1)
    ticks: list = []
    await asyncio.wait_for(results.wait_empty(idle_timeout=0.2, tick=lambda: ticks.append(1)), 5)
    assert results.count == 2 and ticks  # nothing more came: it gave up, and showed progress meanwhile
    assert sorted(results.take_all()) == [1, 2]


def test_result_status_reads_status_and_error_code_cheaply():
    completed = ORIGINAL.model_dump_json().encode()
    assert result_status(completed) == ("Completed", None)
    failed = b'{"reference_id":"r","status":"Failed","error":{"code":"InsufficientFunds","message":"no"}}'
    assert result_status(failed) == ("Failed", "InsufficientFunds")
    assert result_status(b'{"error": {"code": "X"}, "status": "Failed"}') == ("Failed", "X")  # any order: a full parse
