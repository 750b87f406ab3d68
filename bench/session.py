"""One bench run, phase after phase: the processor's workloads on a fresh database and fresh
topics (set-up, throughput, scale-out, fixed-rate latency, then the correctness checks), the
limits (raw Kafka, raw PostgreSQL) and the per-request baseline, then the clean-up.

The phases share a good deal (the stack, the run's topics, the CPU meter, the running
processors, the signing key, the report being filled, the references and transactions the
ledger must hold at the end): `BenchSession` keeps it so that each phase is a method of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import database, system, workloads
from bench.correctness import correctness
from bench.figures import cpu_figures, run_figures
from bench.measure import Run, fixed_rate, throughput
from bench.report import new_output, say
from processor.client.connection import KafkaConnection
from processor.ingest.progress import RunProgress
from processor.ingest.reading import Outgoing
from processor.processor_login import grant_topics, processor_database_url, processor_environment
from processor.settings import ProcessorSettings, load
from processor.signing_keys import tool_signing_key
from schemas.signing import SigningKey

ASSIGNED = "partitions assigned: [("  # a processor's log line once the group gave it partitions

# The workloads that need the processor (scale_out runs with uniform, so it is not among them).
PROCESSOR_WORKLOADS = frozenset({"uniform", "hot_wallet", "mixed", "latency", "latency_light"})


def _counted(bar: RunProgress, *, total: int) -> Callable[[int], None]:
    """A progress callback for bench.database's loops: transactions done of `total`."""
    return lambda done: bar.update(done=done, share=done / total if total else 1.0, expected=total,
                                   counts=f"{done:,}/{total:,}", final=done >= total)


def _database_figures(db_run: database.DbRun, *, cpu: dict[str, float], **extra: Any) -> dict[str, Any]:
    """A PostgreSQL-only run as the report shows it (no latency: it never went through Kafka)."""
    return {
        "transactions": db_run.transactions, "operations": db_run.transactions, "elapsed_s": round(db_run.elapsed, 3),
        "tx_per_s": round(db_run.rate(), 1), "ops_per_s": round(db_run.rate(), 1), **extra, "cpu": cpu,
    }


class BenchSession:
    """The state of one `python -m bench` run, and its phases as methods (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, *, kafka: KafkaConnection, admin_url: str) -> None:
        self.args = args
        self.kafka = kafka
        self.admin_url = admin_url
        self.run_id = uuid.uuid4().hex[:8]
        # Topics of their own per run: nothing left by an earlier run is counted in this one.
        self.prefix = f"bench.{self.run_id}"
        self.topics = system.Topics(requests=f"{self.prefix}.requests", results=f"{self.prefix}.results", dlq=f"{self.prefix}.dlq", partitions=args.partitions)
        self.raw_topics = system.Topics(
            requests=f"{self.prefix}.raw.requests", results=f"{self.prefix}.raw.results", dlq=f"{self.prefix}.raw.dlq", partitions=args.partitions
        )
        self.progress = not args.quiet
        self.selected = set(args.selected)
        self.started = time.monotonic()
        self.output = new_output(args)
        self.cpu = system.CpuMeter()
        self.processors: list[system.Child] = []
        self.signing_key: SigningKey | None = None  # made with the processor workloads' database
        self.raw_database = f"{args.database}_raw"
        # What the ledger and the results topic must hold at the end (the correctness checks).
        self.expected_keys: set[str] = set()
        self.expected_transactions = 0
        # Set once the processors run (start_processors).
        self.database_url = ""
        self.lock_url = ""
        self.processor_env: dict[str, str] = {}

    @property
    def workloads(self) -> dict[str, Any]:
        """The figures of each workload run so far, in the report's order."""
        found: dict[str, Any] = self.output["workloads"]
        return found

    def run(self) -> dict[str, Any]:
        """Every selected phase, in order; the processors and the topics go whatever happens."""
        try:
            if self.selected & PROCESSOR_WORKLOADS:
                self.start_processors()
                self.set_up()
                self.throughput_workloads()
                self.latency_workloads()
                self.stop_and_check()
            if "raw_kafka" in self.selected:
                self.raw_kafka()
            if self.selected & {"raw_postgresql", "per_request"}:
                self.postgresql_only()
        finally:
            self.cleanup()
        return self.output

    # ------------------------------------------------------------ the processor's workloads

    def _track_processors(self) -> None:
        """Meter the CPU of the processors running now (and of their children, e.g. py-spy's)."""
        self.cpu.processor_pids = [pid for child in self.processors for pid in system.process_tree(child.pid)]

    def _start_processor(self, *, profile: Path | None = None) -> system.Child:
        """One more processor of the group, its log numbered after the ones started before it."""
        log_path = self.args.log_dir / f"processor-{self.run_id}-{len(self.processors)}.log"
        return system.start_processor(env=self.processor_env, log_path=log_path, profile=profile)

    def start_processors(self) -> None:
        """A fresh database and topics, the processor's grants and signing key, then --processors processes."""
        args = self.args
        say(f"bench: fresh database {args.database}, topics {self.prefix}.*, {args.partitions} partitions")
        self.database_url = system.fresh_database(self.admin_url, args.database)
        self.output["machine"]["postgresql"] = system.server_versions(self.database_url)
        asyncio.run(system.create_topics(self.kafka, self.topics))
        processor_settings = load(
            ProcessorSettings,
            database_url=self.database_url,
            requests_topic=self.topics.requests,
            results_topic=self.topics.results,
            dlq_topic=self.topics.dlq,
            consumer_group=f"{self.prefix}.processor",
            requests_partitions=args.partitions,
            results_partitions=args.partitions,
        )
        assert isinstance(processor_settings, ProcessorSettings)
        asyncio.run(grant_topics(operator=self.kafka, settings=processor_settings))
        self.signing_key = tool_signing_key(processor_settings, database_url=self.database_url, label="bench")
        self.processor_env = processor_environment(processor_settings)  # logged in as the processor
        for index in range(args.processors):
            self.processors.append(self._start_processor(profile=args.profile if index == 0 else None))
        for child in self.processors:
            child.wait_ready()
        self._track_processors()
        if args.processors > 1:
            time.sleep(3.0)  # let the group settle: every processor with its partitions
        say(f"bench: {args.processors} processor(s) running (pids {[c.pid for c in self.processors]}, logs in {args.log_dir})")
        self.lock_url = processor_database_url(self.database_url)  # the processor's sessions show their waits to their own role

    def _through(self, name: str, records: list[Outgoing], *, window: int | None = None) -> tuple[Run, dict[str, Any]]:
        """Records through the processor as fast as it goes; the run, and the CPU and lock waits it cost."""
        before = self.cpu.snapshot()
        with system.LockWaitSampler(self.lock_url) as locks:
            run = asyncio.run(
                throughput(
                    name, records, kafka=self.kafka, signing_key=self.signing_key, requests_topic=self.topics.requests,
                    results_topic=self.topics.results, window=window or self.args.window, progress=self.progress,
                )
            )
        return run, {**self.cpu.between(before, self.cpu.snapshot()), "lock_wait_s": locks.waited_s}

    def _measured(self, plan: workloads.Workload, *, processors: int) -> dict[str, Any]:
        """A throughput workload's figures; its references join the ones the results topic must hold."""
        run, used = self._through(plan.name, plan.records)
        figures = run_figures(run, operations=plan.operations, transactions=plan.transactions)
        figures["processors"] = processors
        figures["late_vs_early"] = run.late_vs_early()
        figures.update(cpu_figures(used, answered=run.answered, processors=processors))
        if plan.expected_failures:
            figures["expected_failures"] = plan.expected_failures
        self.expected_keys.update(r.result_key for r in plan.records)
        say(f"bench: {plan.name}: {figures['tx_per_s']:,.0f} tx/s, {figures['ops_per_s']:,.0f} ops/s, p99 {figures['p99_ms']} ms")
        return figures

    def set_up(self) -> None:
        """Set-up through Kafka, phase after phase (each needs the one before); a failed one stops the run."""
        setup_started = time.monotonic()
        for phase, records in workloads.setup_phases(self.args.wallets):
            run, _ = self._through(f"setup {phase}", records)
            self.expected_keys.update(r.result_key for r in records)
            if phase == "funding":
                self.expected_transactions += len(records)
            if run.missing or run.statuses.get("Failed"):
                raise RuntimeError(f"set-up phase {phase} failed: {dict(run.statuses)} {dict(run.errors)} missing {run.missing}")
        self.output["setup"] = {"wallets": self.args.wallets, "elapsed_s": round(time.monotonic() - setup_started, 2)}

    def throughput_workloads(self) -> None:
        """uniform (then scale_out, if selected), hot_wallet and mixed, each as fast as it goes."""
        args = self.args
        plans = []
        if "uniform" in self.selected:
            plans.append(workloads.uniform(count=args.transactions, wallets=args.wallets, seed=args.seed))
        if "hot_wallet" in self.selected:
            plans.append(workloads.hot_wallet(count=args.hot_transactions, wallets=args.wallets, seed=args.seed + 1))
        if "mixed" in self.selected:
            plans.append(workloads.mixed(count=args.mixed_transactions, wallets=args.wallets, seed=args.seed + 2))
        for plan in plans:
            say(f"bench: {plan.name}: {plan.transactions:,} transactions, {plan.operations:,} operations")
            self.workloads[plan.name] = self._measured(plan, processors=len(self.processors))
            self.expected_transactions += plan.transactions
            if plan.name == "uniform" and "scale_out" in self.selected:
                self.scale_out()

    def scale_out(self) -> None:
        """The uniform workload again (fresh references) with one more processor in the group.

        The group rebalances twice, when the extra processor joins and when it leaves: each time
        wait until the first processor has its share again, so that no run sees a group in flux."""
        args = self.args
        mark = len(self.processors[0].log())
        extra = self._start_processor().wait_ready()
        self.processors.append(extra)
        self._track_processors()
        self.processors[0].wait_for(ASSIGNED, after=mark)
        extra.wait_for(ASSIGNED)
        scale = workloads.uniform(count=args.transactions, wallets=args.wallets, seed=args.seed + 5, prefix="scale_out")
        say(f"bench: scale_out: {scale.transactions:,} transactions with {len(self.processors)} processors")
        figures = self._measured(scale, processors=len(self.processors))
        figures["ratio_vs_one"] = round(figures["tx_per_s"] / self.workloads["uniform"]["tx_per_s"], 3)
        self.workloads["scale_out"] = figures
        self.expected_transactions += scale.transactions
        mark = len(self.processors[0].log())
        self.processors.pop().stop()  # the rest runs as it started, once the group has rebalanced
        self._track_processors()
        self.processors[0].wait_for(ASSIGNED, after=mark)

    def latency_workloads(self) -> None:
        """latency and latency_light: a fixed offered rate each (skipped when the rate or length is 0)."""
        args = self.args
        for name, rate, seconds, seed in (
            ("latency", args.latency_rate, args.latency_seconds, args.seed + 3),
            ("latency_light", args.light_rate, args.light_seconds, args.seed + 4),
        ):
            if name not in self.selected or rate <= 0 or seconds <= 0:
                continue
            self._fixed_rate(name, rate=rate, seconds=seconds, seed=seed)

    def _fixed_rate(self, name: str, *, rate: float, seconds: float, seed: int) -> None:
        """One fixed-rate run: latencies at `rate` tx/s offered for `seconds`."""
        count = int(rate * seconds)
        plan = workloads.uniform(count=count, wallets=self.args.wallets, seed=seed, prefix=name)
        say(f"bench: {name}: {rate:,.0f} tx/s offered for {seconds:g}s ({count:,} transactions)")
        before = self.cpu.snapshot()
        run = asyncio.run(
            fixed_rate(name, plan.records, rate=rate, kafka=self.kafka, signing_key=self.signing_key, requests_topic=self.topics.requests,
                       results_topic=self.topics.results, progress=self.progress)
        )
        figures = run_figures(run, operations=count, transactions=count)
        figures["offered_tx_per_s"] = rate
        figures["processors"] = len(self.processors)
        figures.update(cpu_figures(self.cpu.between(before, self.cpu.snapshot()), answered=run.answered, processors=len(self.processors)))
        self.workloads[name] = figures
        self.expected_keys.update(r.result_key for r in plan.records)
        self.expected_transactions += count
        say(f"bench: {name}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, p99.9 {figures['p999_ms']} ms")

    def stop_and_check(self) -> None:
        """Stop the processors (nothing left in flight), then audit the ledger and the results topic."""
        say("bench: stopping the processor(s)")
        while self.processors:
            self.processors.pop().stop()
        say("bench: correctness: ledger audit, one result per reference ID")
        self.output["correctness"] = correctness(
            database_url=self.database_url, kafka=self.kafka, topics=self.topics, expected_keys=self.expected_keys,
            expected_transactions=self.expected_transactions,
        )
        say(f"bench: correctness {'OK' if self.output['correctness']['ok'] else 'FAILED'}: {json.dumps(self.output['correctness']['checks'])}")

    # ------------------------------------------------------------ the limits and the baseline

    def raw_kafka(self) -> None:
        """The Kafka limit: the same records through a passthrough that answers results of the processor's size."""
        args = self.args
        count = args.raw_kafka_transactions
        plan = workloads.uniform(count=count, wallets=args.wallets, seed=args.seed)
        result_bytes = (self.workloads.get("uniform") or {}).get("result_bytes_avg") or 1100
        say(f"bench: raw Kafka: {count:,} records through a passthrough consumer/producer (results of {result_bytes} bytes)")
        asyncio.run(system.create_topics(self.kafka, self.raw_topics))
        passthrough = system.Child(
            name="passthrough",
            argv=[sys.executable, "-m", "bench.passthrough", "--requests", self.raw_topics.requests, "--results", self.raw_topics.results,
                  "--group", f"{self.prefix}.raw", "--result-bytes", str(result_bytes),
                  "--max-records", os.environ.get("CLOUDWALLET_BATCH_MAX_RECORDS", "1000")],
            env=dict(os.environ),
            log_path=args.log_dir / f"passthrough-{self.run_id}.log",
            ready="started successfully",
        ).wait_ready()
        self.cpu.processor_pids = [passthrough.pid]
        try:
            before = self.cpu.snapshot()
            run = asyncio.run(
                throughput("raw_kafka", plan.records, kafka=self.kafka, signing_key=self.signing_key, requests_topic=self.raw_topics.requests,
                           results_topic=self.raw_topics.results, window=args.window, progress=self.progress)
            )
            figures = run_figures(run, operations=count, transactions=count)
            figures["cpu"] = self.cpu.between(before, self.cpu.snapshot())
            self.workloads["raw_kafka"] = figures
        finally:
            passthrough.stop()
        say(f"bench: raw Kafka: {figures['tx_per_s']:,.0f} records/s")

    def postgresql_only(self) -> None:
        """raw_postgresql and per_request, on a database of their own (dropped afterwards unless --keep)."""
        say(f"bench: fresh database {self.raw_database} for the PostgreSQL-only runs")
        # Written as the processor writes: its role (the owner is held to row-level security).
        raw_url = processor_database_url(system.fresh_database(self.admin_url, self.raw_database))
        if "raw_postgresql" in self.selected:
            self.raw_postgresql(raw_url)
        if "per_request" in self.selected:
            self.per_request(raw_url)
        if not self.args.keep:
            system.drop_database(self.admin_url, self.raw_database)

    def raw_postgresql(self, raw_url: str) -> None:
        """The PostgreSQL limit: the ledger's rows written in batches (COPY), as the processor writes them, no Kafka."""
        args = self.args
        count = args.raw_pg_transactions
        database.load_wallets(raw_url, project=database.PROJECT, wallets=args.wallets)
        say(f"bench: raw PostgreSQL: {count:,} transfers, the ledger's rows in batches of {args.batch} (COPY), no Kafka")
        self.cpu.processor_pids = []
        before = self.cpu.snapshot()
        with RunProgress(label="  raw_postgresql", enabled=self.progress) as bar:
            db_run = database.raw_batches(
                raw_url, workloads.uniform_transfers(count=count, wallets=args.wallets, seed=args.seed), batch=args.batch,
                progress=_counted(bar, total=count),
            )
        self.workloads["raw_postgresql"] = _database_figures(db_run, batch=args.batch, cpu=self.cpu.between(before, self.cpu.snapshot()))
        say(f"bench: raw PostgreSQL: {db_run.rate():,.0f} tx/s")

    def per_request(self, raw_url: str) -> None:
        """The baseline: one PostgreSQL transaction per transfer over a few connections, no Kafka."""
        args = self.args
        count = args.baseline_transactions
        database.load_wallets(raw_url, project="perreq", wallets=args.wallets)
        say(f"bench: per-request baseline: {count:,} transfers, one PostgreSQL transaction each, {args.baseline_connections} connections, no Kafka")
        before = self.cpu.snapshot()
        with RunProgress(label="  per_request", enabled=self.progress) as bar:
            db_run = database.per_request(
                raw_url, workloads.uniform_transfers(count=count, wallets=args.wallets, seed=args.seed), connections=args.baseline_connections,
                project="perreq", progress=_counted(bar, total=count),
            )
        self.workloads["per_request"] = _database_figures(
            db_run, connections=args.baseline_connections, conflicts=db_run.conflicts, cpu=self.cpu.between(before, self.cpu.snapshot())
        )
        say(f"bench: per-request baseline: {db_run.rate():,.0f} tx/s")

    def cleanup(self) -> None:
        """Stop any processor still running and, unless --keep, delete the run's topics (also after a failure)."""
        while self.processors:
            self.processors.pop().stop()
        if not self.args.keep:
            topics, raw = self.topics, self.raw_topics
            asyncio.run(system.delete_topics(self.kafka, [topics.requests, topics.results, topics.dlq, raw.requests, raw.results, raw.dlq]))
