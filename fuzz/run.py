"""One fuzz run against a running processor: set up a valid world, send the hostile records,
wait until every one is accounted for, probe every partition, audit the ledger, report.

`run_fuzz` is what both `python -m fuzz` (fuzz/cli.py, which starts the processor itself) and
the e2e smoke test (with its own processor) call.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from fuzz import topics
from fuzz.accounting import Answers, Tailer, read_to_end
from fuzz.child import Watched
from fuzz.context import Context
from fuzz.probes import ProbeOutcome, await_probes, send_probes
from fuzz.records import CATEGORIES, generate
from fuzz.report import accounting, failures, named_in_log, probe_view, totals
from fuzz.sending import SendStats, SentLog, send_all
from fuzz.values import FRAGMENTS, Budget
from fuzz.world import World
from processor.client import WalletClient
from processor.settings import ProcessorSettings
from schemas.signing import SigningKey
from processor.stream.acls import reply_prefix
from processor.storage.audit import audit_ledger


@dataclass(frozen=True, kw_only=True)
class FuzzOptions:
    """What to send and how long to wait (fuzz/cli.py's flags; the smoke test's smaller numbers)."""

    records: int = 100_000
    seed: int = 1
    valid_share: float = 0.10
    deadline: float = 600.0  # seconds after the last send to wait for every answer
    idle: float = 60.0  # stop waiting sooner when no new record was answered for this long (0: never)
    window: int = 2000  # records in flight
    probe_timeout: float = 10.0
    categories: Sequence[str] = CATEGORIES
    skip_values: Sequence[str] = ()  # hostile values (fuzz/values.py) never used: to look past a known poison
    keep_topics: bool = False
    progress: bool = True


def say(text: str, *, enabled: bool = True) -> None:
    if enabled:
        print(text, file=sys.stderr, flush=True)


async def set_up_world(*, settings: ProcessorSettings, world: World, signing_key: SigningKey | None) -> None:
    """Apply the world's valid requests (project, asset, wallets, funding) and check each one."""
    async with WalletClient(kafka=settings.kafka, signing_key=signing_key, requests_topic=settings.requests_topic, results_topic=settings.results_topic) as client:
        for stage in world.setup_stages():
            results = await asyncio.gather(*(client.submit(request, timeout=60) for request in stage))
            refused = [(r.reference_id, r.error) for r in results if r.status != "Completed"]
            if refused:
                raise RuntimeError(f"setting up the fuzzer's project failed: {refused}")


def unaccounted(log: SentLog, *, answers: Answers) -> int:
    """Records sent that no result or dead letter names yet (a scan: ~50 ms per 100,000)."""
    return sum(1 for partition, offset in zip(log.partition, log.offset) if not answers.state(partition, offset))


async def wait_accounted(*, log: SentLog, tailer: Tailer, options: FuzzOptions) -> float:
    """Until every record sent is answered, the deadline passes, or answers stopped coming."""
    answers = tailer.answers
    started = time.monotonic()
    shown = answered_before = 0.0
    while (missing := unaccounted(log, answers=answers)) > 0:
        now = time.monotonic()
        if now - started > options.deadline or (options.idle and now - answers.last_new > options.idle) or tailer.error:
            break
        if now - shown >= 5:
            rate = f", {(answers.answered_records - answered_before) / (now - shown):,.0f}/s" if shown else ""
            say(f"  waiting: {len(log) - missing:,}/{len(log):,} accounted for{rate}, {now - started:,.0f}s", enabled=options.progress)
            shown, answered_before = now, answers.answered_records
        await asyncio.sleep(1.0)
    return time.monotonic() - started


def audit(database_url: str) -> dict[str, Any]:
    """The ledger audit over the whole database: hostile records must not have bent any invariant,
    wherever a mutation that stayed valid landed."""
    engine = sa.create_engine(database_url)
    try:
        report = audit_ledger(engine)
    finally:
        engine.dispose()
    problems = {name: len(rows) for name, rows in vars(report).items() if rows}
    return {"ok": report.ok, "problems": problems}


def context(*, settings: ProcessorSettings, options: FuzzOptions, world: World, replies: str, suffix: str, broker_max: int, partitions: int) -> Context:
    """The generators' state: one seeded Random, so a seed replays the same records (the run's
    project and topic names aside)."""
    return Context(
        world=world,
        rng=random.Random(options.seed),
        budget=Budget.for_records(options.records),
        requests_topic=settings.requests_topic,
        results_topic=settings.results_topic,
        dlq_topic=settings.dlq_topic,
        replies_topic=replies,
        missing_topics=tuple(f"fuzz.{suffix}.nowhere.{i}" for i in range(16)),
        partitions=partitions,
        max_request_bytes=settings.max_request_bytes,
        broker_max_bytes=broker_max,
        fragment_names=tuple(name for name in FRAGMENTS if name not in options.skip_values),
    )


async def run_fuzz(
    *, settings: ProcessorSettings, options: FuzzOptions, processor: Watched, signing_key: SigningKey | None, suffix: str | None = None
) -> dict[str, Any]:
    """The whole run against a started processor; returns the summary (see fuzz/report.py).
    `suffix` names the run's project and reply topic (default: a fresh one)."""
    suffix = suffix or uuid.uuid4().hex[:8]
    world = World.named(suffix=suffix)
    replies = f"{reply_prefix(settings.results_topic)}fuzz"  # a reply topic the processor may write
    kafka = settings.kafka
    await topics.create_topic(kafka=kafka, name=replies, partitions=1)
    try:
        broker_max = await topics.max_message_bytes(kafka=kafka, topic=settings.requests_topic)
        say(f"fuzz: project {world.project}, {options.records:,} records, seed {options.seed}; setting up", enabled=options.progress)
        await set_up_world(settings=settings, world=world, signing_key=signing_key)
        partitions = await topics.partition_count(kafka=kafka, topic=settings.requests_topic)
        ctx = context(settings=settings, options=options, world=world, replies=replies, suffix=suffix, broker_max=broker_max, partitions=partitions)
        ctx.signing_key = signing_key
        found = await _send_and_account(settings=settings, options=options, ctx=ctx, broker_max=broker_max, processor=processor)
    finally:
        if not options.keep_topics:
            await topics.delete_topics(kafka=kafka, names=[replies])
    found["audit"] = await asyncio.to_thread(audit, settings.database_url)
    found["processor"] = {"pid": processor.pid, "alive": processor.alive, "starts": processor.starts(), "error_lines": len(errors := processor.error_lines()), "last_errors": errors[-5:]}
    found["run"] |= {"seed": options.seed, "records_requested": options.records, "valid_share": options.valid_share, "project": world.project, "replies_topic": replies}
    found["failures"] = failures(found=found)
    found["ok"] = not found["failures"]
    return found


async def _send_and_account(*, settings: ProcessorSettings, options: FuzzOptions, ctx: Context, broker_max: int, processor: Watched) -> dict[str, Any]:
    answers = Answers(requests_topic=settings.requests_topic)
    tailer = Tailer(kafka=settings.kafka, answers=answers)
    answer_topics = [settings.results_topic, settings.dlq_topic, ctx.replies_topic]
    if "reply_to_requests" in options.categories:  # records name it as their reply_to: an answer topic too
        answer_topics.append(settings.requests_topic)
    await tailer.start(answer_topics)
    producer = AIOKafkaProducer(
        **settings.kafka.options(), acks="all", linger_ms=5, max_batch_size=512 * 1024, max_request_size=broker_max + 1_048_576
    )
    await producer.start()
    try:
        log = SentLog()
        stats = await _send(producer=producer, settings=settings, options=options, ctx=ctx, log=log, answers=answers)
        waited = await wait_accounted(log=log, tailer=tailer, options=options)
        await _read_late_reply_topics(settings=settings, ctx=ctx, answers=answers)
        partitions = sorted(await producer.partitions_for(settings.requests_topic))
        probes = await send_probes(producer=producer, topic=settings.requests_topic, world=ctx.world, partitions=partitions, answers=answers, signing_key=ctx.signing_key)
        probed = await await_probes(probes, answers=answers, timeout=options.probe_timeout)
    finally:
        await producer.stop()
        await tailer.stop()
    found = _summary(log=log, answers=answers, stats=stats, waited=waited, probed=probed, options=options)
    found["named_in_processor_log"] = named_in_log(log, text=processor.log(), topic=settings.requests_topic)
    found["answers"]["read_error"] = tailer.error
    return found


async def _send(*, producer: AIOKafkaProducer, settings: ProcessorSettings, options: FuzzOptions, ctx: Context, log: SentLog, answers: Answers) -> SendStats:
    last = [time.monotonic()]

    def progress() -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            say(f"  sending: {len(log):,}/{options.records:,} sent, {answers.answered_records:,} answered so far", enabled=options.progress)

    records = generate(ctx, records=options.records, selected=options.categories, valid_share=options.valid_share)
    stats = await send_all(producer, topic=settings.requests_topic, records=records, log=log, window=options.window, signing_key=ctx.signing_key, on_window=progress)
    say(f"  sent {len(log):,} records in {stats.seconds:.1f}s ({sum(log.refused.values()):,} refused by the broker or client)", enabled=options.progress)
    return stats


async def _read_late_reply_topics(*, settings: ProcessorSettings, ctx: Context, answers: Answers) -> None:
    """reply_to names that did not exist at the start but do now: read them too."""
    watched = {settings.results_topic, settings.dlq_topic, ctx.replies_topic, settings.requests_topic}
    late = await topics.existing(kafka=settings.kafka, names=ctx.reply_topics_named - watched)
    if late:
        await read_to_end(kafka=settings.kafka, topics=late, answers=answers)


def _summary(*, log: SentLog, answers: Answers, stats: SendStats, waited: float, probed: list[ProbeOutcome], options: FuzzOptions) -> dict[str, Any]:
    found = accounting(log, answers=answers)
    found["totals"] = totals(found["categories"])
    found["probes"] = probe_view(probed)
    found["stalls"] = sum(1 for p in probed if not p.answered)
    found["probe_timeout_s"] = options.probe_timeout
    found["answers"] = {"by_topic": dict(answers.answers_by_topic), "unattributed_by_topic": dict(answers.unattributed)}
    found["refused_samples"] = log.refused_samples
    found["run"] = {
        "send_s": round(stats.seconds, 2),
        "send_mb": round(stats.bytes_sent / 1e6, 1),
        "send_per_s": round(len(log) / max(stats.seconds, 1e-9)),
        "wait_s": round(waited, 2),
        "accounted_per_s": round(answers.answered_records / max(stats.seconds + waited, 1e-9)),
    }
    return found
