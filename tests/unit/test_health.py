"""Readiness (processor/stream/health.py) names each thing that keeps the processor from its
work. PostgreSQL here is one that cannot be reached (a closed port): the real flips, with a real
processor, PostgreSQL cut off and restored, are in tests/e2e/test_operations.py."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from processor.stream.health import BROKER_TIMEOUT_S, Readiness

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def readiness(*, broker_answers, started: bool = True, partitions: int = 2, since: float | None = None) -> Readiness:
    engine = sa.create_engine(UNREACHABLE, connect_args={"connect_timeout": 1})
    return Readiness(
        engine=engine, broker_connected=lambda: started, broker_answers=broker_answers,
        partitions_assigned=lambda: partitions, batch_running_since=lambda: since, stuck_after_seconds=60,
    )  # fmt: skip


async def answers() -> None:
    return None


async def hangs() -> None:
    await asyncio.sleep(3600)


async def refuses() -> None:
    raise ConnectionError("no broker")


async def test_a_broker_that_does_not_answer_makes_the_processor_not_ready_within_the_bound() -> None:
    for broker in (hangs, refuses):
        started = time.monotonic()
        problems = await readiness(broker_answers=broker).problems()
        assert time.monotonic() - started < BROKER_TIMEOUT_S + 1.5, "the probes run at once, each bounded"
        assert any("no Kafka broker answered" in problem for problem in problems), problems
        assert any("PostgreSQL" in problem for problem in problems), problems


async def test_each_problem_is_named_once_and_a_broker_that_answers_is_not_one() -> None:
    problems = await readiness(broker_answers=answers, partitions=0, since=time.monotonic() - 61).problems()
    assert not any("broker" in problem for problem in problems), problems
    assert any("no partition" in problem for problem in problems) and any("stage 1 for 61s" in problem for problem in problems), problems
    problems = await readiness(broker_answers=answers, started=False).problems()
    assert any("not started" in problem for problem in problems) and not any("metadata" in problem for problem in problems), problems
