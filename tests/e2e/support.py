"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio


async def collect_results(*, topology, count: int | None = None, references: set[str] | None = None, timeout: float = 60) -> list:
    """Read the results topic from the beginning until `count` records, or a result for every
    one of `references`, are there (or the timeout passes): [(key, Result, headers)]."""
    from aiokafka import AIOKafkaConsumer

    from schemas.results import Result

    consumer = AIOKafkaConsumer(topology.results_topic, bootstrap_servers=topology.bootstrap_servers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        seen: set[str] = set()

        def done() -> bool:
            if references is not None:
                return references <= seen
            return count is not None and len(found) >= count

        while not done() and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    result = Result.model_validate_json(record.value)
                    found.append((record.key.decode(), result, dict(record.headers or ())))
                    seen.add(result.reference_id)
    finally:
        await consumer.stop()
    return found
