"""`python -m bench`: the whole benchmark in one run, on the local stack (or KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL), from an empty database. See docs/benchmark.md for what each figure means.

Sizes are flags (or BENCH_<FLAG> environment variables, e.g. BENCH_TRANSACTIONS=50000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import database, system, workloads
from bench.measure import Run, fixed_rate, throughput
from processor.client.connection import KafkaConnection
from processor.ingest.progress import RunProgress
from processor.processor_login import grant_topics, processor_database_url, processor_environment
from processor.settings import KafkaSettings, ProcessorSettings, SettingsError, load
from schemas.signing import SigningKey
from processor.signing_keys import tool_signing_key

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("uniform", "scale_out", "hot_wallet", "mixed", "latency", "latency_light", "raw_kafka", "raw_postgresql", "per_request")

ASSIGNED = "partitions assigned: [("  # a processor's log line once the group gave it partitions

# The goals of docs/benchmark.md, as ratios measured in one run ("at_least" or "at_most").
TARGETS = {
    "uniform_vs_raw_kafka": ("at_least", 0.5),
    "hot_vs_uniform": ("at_least", 0.7),
    "latency_p99_ms": ("at_most", 50.0),  # at --latency-rate (2,000 tx/s) offered
    "latency_light_p50_ms": ("at_most", 10.0),  # at --light-rate (500 tx/s) offered
    "scale_out_ratio_vs_one": ("at_least", 1.0),
    "late_vs_early": ("at_least", 0.8),  # make bench-long: the last tenth's rate against the first's
}


def _env_default(name: str, default: Any) -> Any:
    value = os.environ.get(f"BENCH_{name.upper()}")
    if value is None:
        return default
    return type(default)(value) if default is not None else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = _env_default
    p.add_argument("--wallets", type=int, default=d("wallets", 10_000), help="funded customer wallets (default 10000)")
    p.add_argument("--transactions", type=int, default=d("transactions", 200_000), help="uniform single transfers (default 200000)")
    p.add_argument("--hot-transactions", type=int, default=d("hot_transactions", 100_000), help="hot-wallet transactions (default 100000)")
    p.add_argument("--mixed-transactions", type=int, default=d("mixed_transactions", 100_000), help="mixed transactions (default 100000)")
    p.add_argument("--latency-rate", type=float, default=d("latency_rate", 2000.0), help="offered tx/s in the latency run (default 2000)")
    p.add_argument("--latency-seconds", type=float, default=d("latency_seconds", 30.0), help="length of the latency run (default 30)")
    p.add_argument("--light-rate", type=float, default=d("light_rate", 500.0), help="offered tx/s of the light-load latency run (default 500)")
    p.add_argument("--light-seconds", type=float, default=d("light_seconds", 10.0), help="length of the light-load latency run (default 10)")
    p.add_argument("--raw-kafka-transactions", type=int, default=d("raw_kafka_transactions", 0), help="default: --transactions")
    p.add_argument("--raw-pg-transactions", type=int, default=d("raw_pg_transactions", 0), help="default: --transactions")
    p.add_argument("--baseline-transactions", type=int, default=d("baseline_transactions", 20_000), help="per-request baseline size (default 20000)")
    p.add_argument("--baseline-connections", type=int, default=d("baseline_connections", 4), help="parallel connections of the baseline (default 4)")
    p.add_argument("--processors", type=int, default=d("processors", 1), help="processor processes in the consumer group (default 1)")
    p.add_argument("--partitions", type=int, default=d("partitions", 8), help="partitions of the bench topics (default 8)")
    p.add_argument("--window", type=int, default=d("window", 20_000), help="requests in flight at most in throughput runs (default 20000)")
    p.add_argument("--batch", type=int, default=d("batch", 1000), help="raw PostgreSQL batch size (default: the processor's 1000)")
    p.add_argument("--database", default=d("database", "cw_bench"), help="database to (re)create for the processor (default cw_bench)")
    p.add_argument("--seed", type=int, default=d("seed", 7))
    p.add_argument("--only", default=d("only", ""), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--output", type=Path, default=Path(d("output", str(ROOT / "bench" / "results" / "latest.json"))))
    p.add_argument("--log-dir", type=Path, default=Path(d("log_dir", str(ROOT / "bench" / "results" / "logs"))))
    p.add_argument("--profile", type=Path, default=None, help="run the processor under py-spy, write a speedscope profile here")
    p.add_argument("--keep", action="store_true", help="keep the bench topics and the raw database")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    args.raw_kafka_transactions = args.raw_kafka_transactions or args.transactions
    args.raw_pg_transactions = args.raw_pg_transactions or args.transactions
    selected = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(selected) - set(WORKLOADS)
    if unknown:
        p.error(f"--only: unknown workload(s) {sorted(unknown)}; choose from {','.join(WORKLOADS)}")
    args.selected = selected
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _cpu_figures(used: dict[str, Any], *, answered: int, processors: int) -> dict[str, Any]:
    """CPU seconds per role, and microseconds of CPU per transaction (processor, PostgreSQL, ...)."""
    figures: dict[str, Any] = {
        "cpu": {k: v for k, v in used.items() if k != "lock_wait_s"},
        "cpu_us_per_tx": {k.removesuffix("_cpu_s"): round(v * 1e6 / max(answered, 1)) for k, v in used.items() if k.endswith("_cpu_s")},
    }
    if "lock_wait_s" in used:
        # Seconds batches waited on row locks (sampled), and that as a share of the processors' time.
        figures["lock_wait_s"] = used["lock_wait_s"]
        figures["lock_wait_share"] = round(used["lock_wait_s"] / max(used["wall_s"] * processors, 1e-9), 3)
    return figures


def _run_figures(run: Run, *, operations: int, transactions: int) -> dict[str, Any]:
    elapsed = run.elapsed
    return {
        "transactions": transactions,
        "operations": operations,
        "answered": run.answered,
        "missing": run.missing,
        "elapsed_s": round(elapsed, 3),
        "tx_per_s": round(run.answered / elapsed, 1),
        "ops_per_s": round(operations * (run.answered / max(transactions, 1)) / elapsed, 1),
        **run.latency_ms(),
        "statuses": dict(run.statuses),
        "errors": dict(run.errors),
        "result_bytes_avg": round(run.result_bytes / run.answered) if run.answered else None,
        "request_bytes_avg": round(run.request_bytes / max(run.sent, 1)) if run.request_bytes else None,
    }


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


def targets_met(found: dict[str, Any]) -> dict[str, Any]:
    """Each goal of TARGETS whose workloads ran, with what was measured and whether it is met."""
    measured: dict[str, float | None] = {}
    if "uniform" in found and "raw_kafka" in found:
        measured["uniform_vs_raw_kafka"] = round(found["uniform"]["tx_per_s"] / found["raw_kafka"]["tx_per_s"], 3)
    if "uniform" in found and "hot_wallet" in found:
        measured["hot_vs_uniform"] = round(found["hot_wallet"]["tx_per_s"] / found["uniform"]["tx_per_s"], 3)
    if "latency" in found:
        measured["latency_p99_ms"] = found["latency"]["p99_ms"]
    if "latency_light" in found:
        measured["latency_light_p50_ms"] = found["latency_light"]["p50_ms"]
    if "scale_out" in found:
        measured["scale_out_ratio_vs_one"] = found["scale_out"]["ratio_vs_one"]
    if "uniform" in found and found["uniform"]["transactions"] >= 1_000_000:  # make bench-long
        measured["late_vs_early"] = found["uniform"]["late_vs_early"]
    targets = {}
    for name, value in measured.items():
        rule, target = TARGETS[name]
        met = value is not None and (value >= target if rule == "at_least" else value <= target)
        targets[name] = {"rule": rule, "target": target, "measured": value, "met": met}
    return targets


def print_table(results: dict[str, Any]) -> str:
    rows = []
    header = f"{'workload':<16}{'tx/s':>10}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'vs Kafka':>10}{'vs PG':>8}{'vs per-req':>11}"
    rows.append(header)
    rows.append("-" * len(header))

    def cell(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, int | float) else "-"

    for name, w in results["workloads"].items():
        ratios = w.get("ratios", {})
        rows.append(
            f"{name:<16}{cell(w.get('tx_per_s'), ',.0f'):>10}{cell(w.get('ops_per_s'), ',.0f'):>10}"
            f"{cell(w.get('p50_ms'), '.1f'):>9}{cell(w.get('p99_ms'), '.1f'):>9}{cell(w.get('p999_ms'), '.1f'):>10}"
            f"{cell(ratios.get('vs_raw_kafka'), '.2f'):>10}{cell(ratios.get('vs_raw_postgresql'), '.2f'):>8}{cell(ratios.get('vs_per_request'), '.2f'):>11}"
        )
    return "\n".join(rows)


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin_url = os.environ.get("DATABASE_URL")
    try:
        kafka = load(KafkaSettings).kafka  # type: ignore[attr-defined]
    except SettingsError as error:
        say(f"bench: {error}")
        kafka = None
    if kafka is None or not admin_url:
        say('bench: KAFKA_BOOTSTRAP_SERVERS (and the Kafka login) and DATABASE_URL must be set (make bench does it; or eval "$(python3 deploy/local/stack.py env --as admin)")')
        return 2
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench.{run_id}"
    topics = system.Topics(requests=f"{prefix}.requests", results=f"{prefix}.results", dlq=f"{prefix}.dlq", partitions=args.partitions)
    raw_topics = system.Topics(requests=f"{prefix}.raw.requests", results=f"{prefix}.raw.results", dlq=f"{prefix}.raw.dlq", partitions=args.partitions)
    progress = not args.quiet
    selected = set(args.selected)
    started = time.monotonic()
    output: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        # Paths relative to the clone (the file is committed: no path of the machine in it).
        "config": {k: (_shown(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("selected",)},
        # No secrets and no paths of this machine: passwords, keys, secrets, files, URLs.
        "processor_settings": {
            k: v for k, v in os.environ.items() if k.startswith("CLOUDWALLET_") and not any(word in k for word in ("URL", "PASSWORD", "_FILE", "KEY", "SECRET", "TOKEN"))
        },
        "workloads": {},
        "setup": {},
        "targets": {},
    }
    cpu = system.CpuMeter()
    processors: list[system.Child] = []
    signing_key: SigningKey | None = None  # made with the processor workloads' database
    raw_database = f"{args.database}_raw"
    try:
        # ------------------------------------------------------------ the processor's workloads
        processor_workloads = selected & {"uniform", "hot_wallet", "mixed", "latency", "latency_light"}
        expected_keys: set[str] = set()
        expected_transactions = 0
        if processor_workloads:
            say(f"bench: fresh database {args.database}, topics {prefix}.*, {args.partitions} partitions")
            database_url = system.fresh_database(admin_url, args.database)
            output["machine"]["postgresql"] = system.server_versions(database_url)
            asyncio.run(system.create_topics(kafka, topics))
            processor_settings = load(
                ProcessorSettings,
                database_url=database_url,
                requests_topic=topics.requests,
                results_topic=topics.results,
                dlq_topic=topics.dlq,
                consumer_group=f"{prefix}.processor",
                requests_partitions=args.partitions,
                results_partitions=args.partitions,
            )
            assert isinstance(processor_settings, ProcessorSettings)
            asyncio.run(grant_topics(operator=kafka, settings=processor_settings))
            signing_key = tool_signing_key(processor_settings, database_url=database_url, label="bench")
            env = processor_environment(processor_settings)  # logged in as the processor
            for index in range(args.processors):
                profile = args.profile if index == 0 else None
                processors.append(system.start_processor(env=env, log_path=args.log_dir / f"processor-{run_id}-{index}.log", profile=profile))
            for child in processors:
                child.wait_ready()
            cpu.processor_pids = [pid for child in processors for pid in system.process_tree(child.pid)]
            if args.processors > 1:
                time.sleep(3.0)  # let the group settle: every processor with its partitions
            say(f"bench: {args.processors} processor(s) running (pids {[c.pid for c in processors]}, logs in {args.log_dir})")

            lock_url = processor_database_url(database_url)  # the processor's sessions show their waits to their own role

            def through(name: str, records: list, *, window: int | None = None) -> tuple[Run, dict[str, Any]]:
                before = cpu.snapshot()
                with system.LockWaitSampler(lock_url) as locks:
                    run = asyncio.run(
                        throughput(
                            name, records, kafka=kafka, signing_key=signing_key, requests_topic=topics.requests, results_topic=topics.results,
                            window=window or args.window, progress=progress,
                        )
                    )
                return run, {**cpu.between(before, cpu.snapshot()), "lock_wait_s": locks.waited_s}

            def measured(plan: workloads.Workload, *, processors: int) -> dict[str, Any]:
                run, used = through(plan.name, plan.records)
                figures = _run_figures(run, operations=plan.operations, transactions=plan.transactions)
                figures["processors"] = processors
                figures["late_vs_early"] = run.late_vs_early()
                figures.update(_cpu_figures(used, answered=run.answered, processors=processors))
                if plan.expected_failures:
                    figures["expected_failures"] = plan.expected_failures
                expected_keys.update(r.result_key for r in plan.records)
                say(f"bench: {plan.name}: {figures['tx_per_s']:,.0f} tx/s, {figures['ops_per_s']:,.0f} ops/s, p99 {figures['p99_ms']} ms")
                return figures

            # Set-up through Kafka, phase after phase (each needs the one before).
            setup_started = time.monotonic()
            for phase, records in workloads.setup_phases(args.wallets):
                run, _ = through(f"setup {phase}", records)
                expected_keys.update(r.result_key for r in records)
                expected_transactions += phase == "funding" and len(records)
                if run.missing or run.statuses.get("Failed"):
                    raise RuntimeError(f"set-up phase {phase} failed: {dict(run.statuses)} {dict(run.errors)} missing {run.missing}")
            output["setup"] = {"wallets": args.wallets, "elapsed_s": round(time.monotonic() - setup_started, 2)}

            plans = []
            if "uniform" in selected:
                plans.append(workloads.uniform(count=args.transactions, wallets=args.wallets, seed=args.seed))
            if "hot_wallet" in selected:
                plans.append(workloads.hot_wallet(count=args.hot_transactions, wallets=args.wallets, seed=args.seed + 1))
            if "mixed" in selected:
                plans.append(workloads.mixed(count=args.mixed_transactions, wallets=args.wallets, seed=args.seed + 2))
            for plan in plans:
                say(f"bench: {plan.name}: {plan.transactions:,} transactions, {plan.operations:,} operations")
                output["workloads"][plan.name] = measured(plan, processors=len(processors))
                expected_transactions += plan.transactions
                if plan.name == "uniform" and "scale_out" in selected:
                    # The same workload with one more processor in the group (fresh references).
                    # The group rebalances: wait until the first processor has its share again.
                    mark = len(processors[0].log())
                    extra = system.start_processor(env=env, log_path=args.log_dir / f"processor-{run_id}-{len(processors)}.log").wait_ready()
                    processors.append(extra)
                    cpu.processor_pids = [pid for child in processors for pid in system.process_tree(child.pid)]
                    processors[0].wait_for(ASSIGNED, after=mark)
                    extra.wait_for(ASSIGNED)
                    scale = workloads.uniform(count=args.transactions, wallets=args.wallets, seed=args.seed + 5, prefix="scale_out")
                    say(f"bench: scale_out: {scale.transactions:,} transactions with {len(processors)} processors")
                    figures = measured(scale, processors=len(processors))
                    figures["ratio_vs_one"] = round(figures["tx_per_s"] / output["workloads"]["uniform"]["tx_per_s"], 3)
                    output["workloads"]["scale_out"] = figures
                    expected_transactions += scale.transactions
                    mark = len(processors[0].log())
                    processors.pop().stop()  # the rest runs as it started, once the group has rebalanced
                    cpu.processor_pids = [pid for child in processors for pid in system.process_tree(child.pid)]
                    processors[0].wait_for(ASSIGNED, after=mark)
            for name, rate, seconds, seed in (
                ("latency", args.latency_rate, args.latency_seconds, args.seed + 3),
                ("latency_light", args.light_rate, args.light_seconds, args.seed + 4),
            ):
                if name not in selected or rate <= 0 or seconds <= 0:
                    continue
                count = int(rate * seconds)
                plan = workloads.uniform(count=count, wallets=args.wallets, seed=seed, prefix=name)
                say(f"bench: {name}: {rate:,.0f} tx/s offered for {seconds:g}s ({count:,} transactions)")
                before = cpu.snapshot()
                run = asyncio.run(
                    fixed_rate(name, plan.records, rate=rate, kafka=kafka, signing_key=signing_key, requests_topic=topics.requests,
                               results_topic=topics.results, progress=progress)
                )
                figures = _run_figures(run, operations=count, transactions=count)
                figures["offered_tx_per_s"] = rate
                figures["processors"] = len(processors)
                figures.update(_cpu_figures(cpu.between(before, cpu.snapshot()), answered=run.answered, processors=len(processors)))
                output["workloads"][name] = figures
                expected_keys.update(r.result_key for r in plan.records)
                expected_transactions += count
                say(f"bench: {name}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, p99.9 {figures['p999_ms']} ms")

            say("bench: stopping the processor(s)")
            while processors:
                processors.pop().stop()
            say("bench: correctness: ledger audit, one result per reference ID")
            output["correctness"] = correctness(
                database_url=database_url, kafka=kafka, topics=topics, expected_keys=expected_keys, expected_transactions=expected_transactions
            )
            say(f"bench: correctness {'OK' if output['correctness']['ok'] else 'FAILED'}: {json.dumps(output['correctness']['checks'])}")

        # ------------------------------------------------------------ the limits and the baseline
        if "raw_kafka" in selected:
            count = args.raw_kafka_transactions
            plan = workloads.uniform(count=count, wallets=args.wallets, seed=args.seed)
            result_bytes = (output["workloads"].get("uniform") or {}).get("result_bytes_avg") or 1100
            say(f"bench: raw Kafka: {count:,} records through a passthrough consumer/producer (results of {result_bytes} bytes)")
            asyncio.run(system.create_topics(kafka, raw_topics))
            passthrough = system.Child(
                name="passthrough",
                argv=[sys.executable, "-m", "bench.passthrough", "--requests", raw_topics.requests, "--results", raw_topics.results,
                      "--group", f"{prefix}.raw", "--result-bytes", str(result_bytes),
                      "--max-records", os.environ.get("CLOUDWALLET_BATCH_MAX_RECORDS", "1000")],
                env=dict(os.environ),
                log_path=args.log_dir / f"passthrough-{run_id}.log",
                ready="started successfully",
            ).wait_ready()
            cpu.processor_pids = [passthrough.pid]
            try:
                before = cpu.snapshot()
                run = asyncio.run(
                    throughput("raw_kafka", plan.records, kafka=kafka, signing_key=signing_key, requests_topic=raw_topics.requests, results_topic=raw_topics.results,
                               window=args.window, progress=progress)
                )
                figures = _run_figures(run, operations=count, transactions=count)
                figures["cpu"] = cpu.between(before, cpu.snapshot())
                output["workloads"]["raw_kafka"] = figures
            finally:
                passthrough.stop()
            say(f"bench: raw Kafka: {figures['tx_per_s']:,.0f} records/s")

        if selected & {"raw_postgresql", "per_request"}:
            say(f"bench: fresh database {raw_database} for the PostgreSQL-only runs")
            # Written as the processor writes: its role (the owner is held to row-level security).
            raw_url = processor_database_url(system.fresh_database(admin_url, raw_database))

            def counted(bar: RunProgress, *, total: int) -> Callable[[int], None]:
                """A progress callback for bench.database's loops: transactions done of `total`."""
                return lambda done: bar.update(done=done, share=done / total if total else 1.0, expected=total,
                                               counts=f"{done:,}/{total:,}", final=done >= total)

            if "raw_postgresql" in selected:
                count = args.raw_pg_transactions
                database.load_wallets(raw_url, project=database.PROJECT, wallets=args.wallets)
                say(f"bench: raw PostgreSQL: {count:,} transfers, the ledger's rows in batches of {args.batch} (COPY), no Kafka")
                cpu.processor_pids = []
                before = cpu.snapshot()
                with RunProgress(label="  raw_postgresql", enabled=progress) as bar:
                    db_run = database.raw_batches(
                        raw_url, workloads.uniform_transfers(count=count, wallets=args.wallets, seed=args.seed), batch=args.batch,
                        progress=counted(bar, total=count),
                    )
                output["workloads"]["raw_postgresql"] = {
                    "transactions": db_run.transactions, "operations": db_run.transactions, "elapsed_s": round(db_run.elapsed, 3),
                    "tx_per_s": round(db_run.rate(), 1), "ops_per_s": round(db_run.rate(), 1), "batch": args.batch,
                    "cpu": cpu.between(before, cpu.snapshot()),
                }
                say(f"bench: raw PostgreSQL: {db_run.rate():,.0f} tx/s")
            if "per_request" in selected:
                count = args.baseline_transactions
                database.load_wallets(raw_url, project="perreq", wallets=args.wallets)
                say(f"bench: per-request baseline: {count:,} transfers, one PostgreSQL transaction each, {args.baseline_connections} connections, no Kafka")
                before = cpu.snapshot()
                with RunProgress(label="  per_request", enabled=progress) as bar:
                    db_run = database.per_request(
                        raw_url, workloads.uniform_transfers(count=count, wallets=args.wallets, seed=args.seed), connections=args.baseline_connections,
                        project="perreq", progress=counted(bar, total=count),
                    )
                output["workloads"]["per_request"] = {
                    "transactions": db_run.transactions, "operations": db_run.transactions, "elapsed_s": round(db_run.elapsed, 3),
                    "tx_per_s": round(db_run.rate(), 1), "ops_per_s": round(db_run.rate(), 1), "connections": args.baseline_connections,
                    "conflicts": db_run.conflicts, "cpu": cpu.between(before, cpu.snapshot()),
                }
                say(f"bench: per-request baseline: {db_run.rate():,.0f} tx/s")
            if not args.keep:
                system.drop_database(admin_url, raw_database)
    finally:
        while processors:
            processors.pop().stop()
        if not args.keep:
            asyncio.run(system.delete_topics(kafka, [topics.requests, topics.results, topics.dlq, raw_topics.requests, raw_topics.results, raw_topics.dlq]))

    # ------------------------------------------------------------ ratios, targets, report
    found = output["workloads"]
    limits = {name: found[name]["tx_per_s"] for name in ("raw_kafka", "raw_postgresql", "per_request") if name in found}
    for name in ("uniform", "scale_out", "hot_wallet", "mixed", "latency", "latency_light"):
        if name in found:
            found[name]["ratios"] = {f"vs_{limit}": round(found[name]["tx_per_s"] / rate, 3) for limit, rate in limits.items() if rate}
    if "raw_postgresql" in found and "per_request" in found:
        found["raw_postgresql"]["ratios"] = {"vs_per_request": round(found["raw_postgresql"]["tx_per_s"] / found["per_request"]["tx_per_s"], 3)}
    output["targets"] = targets_met(found)
    output["elapsed_s"] = round(time.monotonic() - started, 1)
    table = print_table(output)
    output["table"] = table.splitlines()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(table)
    for name, target in output["targets"].items():
        print(f"target {name}: {target['measured']} ({target['rule'].replace('_', ' ')} {target['target']}) {'met' if target['met'] else 'NOT met'}")
    if "correctness" in output:
        print(f"correctness: {'OK' if output['correctness']['ok'] else 'FAILED'} {json.dumps(output['correctness']['checks'])}")
    print(f"written {args.output} ({output['elapsed_s']}s)")
    return 0 if output.get("correctness", {"ok": True})["ok"] else 1
