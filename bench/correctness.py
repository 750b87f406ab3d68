"""After the processor's workloads: is the ledger right, and did every reference get exactly one
result? A benchmark of a ledger that lost or doubled a transfer measures nothing, so the run's
exit code depends on this."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import sqlalchemy as sa

from bench import system, workloads
from processor.client.connection import KafkaConnection


async def count_results(kafka: KafkaConnection, topic: str) -> tuple[int, Counter[str]]:
    """Every record of a topic, counted per key."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka.options(), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1_048_576)
    await consumer.start()
    counts: Counter[str] = Counter()
    total = 0
    try:
        known = consumer.partitions_for_topic(topic)
        if not known:
            await consumer._client.force_metadata_update()
            known = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        if not partitions:
            return 0, counts
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for tp, records in batches.items():
                for record in records:
                    counts[record.key.decode() if record.key else ""] += 1
                    total += 1
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if not batches:
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return total, counts


def correctness(*, database_url: str, kafka: KafkaConnection, topics: system.Topics, expected_keys: set[str], expected_transactions: int) -> dict[str, Any]:
    """The ledger audit, the counts in the database and one result per reference on the results
    topic (none missing, none repeated, none unexpected), and an empty dead-letter topic."""
    from processor.storage.audit import audit_ledger

    engine = sa.create_engine(database_url)
    try:
        report = audit_ledger(engine)
        with engine.connect() as c:
            transactions = c.execute(sa.text("SELECT count(*) FROM transactions WHERE project_id = :p"), {"p": workloads.PROJECT}).scalar_one()
            references = c.execute(sa.text("SELECT count(*) FROM processed_requests WHERE project_id = :p"), {"p": workloads.PROJECT}).scalar_one()
            entries = c.execute(sa.text("SELECT count(*) FROM wallet_entries WHERE project_id = :p"), {"p": workloads.PROJECT}).scalar_one()
    finally:
        engine.dispose()
    total, counts = asyncio.run(count_results(kafka, topics.results))
    dlq_total, _ = asyncio.run(count_results(kafka, topics.dlq))
    repeated = sum(1 for n in counts.values() if n > 1)
    missing = len(expected_keys - counts.keys())
    unexpected = len(counts.keys() - expected_keys)
    audit = {
        "wallet_mismatches": len(report.wallet_mismatches),
        "last_entry_mismatches": len(report.last_entry_mismatches),
        "asset_mismatches": len(report.asset_mismatches),
        "negative_balances": len(report.negative_balances),
        "failed_with_entries": len(report.failed_with_entries),
    }
    checks = {
        "ledger_audit_ok": report.ok,
        "one_result_per_reference": repeated == 0 and missing == 0 and unexpected == 0 and total == len(expected_keys),
        "transactions_recorded": transactions == expected_transactions,
        "references_recorded": references == len(expected_keys),
        "dlq_empty": dlq_total == 0,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "audit": audit,
        "results_topic": {"records": total, "distinct_keys": len(counts), "expected": len(expected_keys), "repeated_keys": repeated, "missing_keys": missing, "unexpected_keys": unexpected},
        "database": {"transactions": transactions, "expected_transactions": expected_transactions, "spent_references": references, "entries": entries},
        "dlq_records": dlq_total,
    }
