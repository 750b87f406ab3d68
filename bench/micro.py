"""`python -m bench.micro`: the processor's batch path alone (decode, engine, PostgreSQL), no Kafka.

Times `processor.service.batch.process_batch` on batches of uniform transfers against a fresh
database (results encoded there), plus building the Kafka messages (processor/stream/outbox.py) — the figures docs/benchmark.md uses to
tell what each optimisation gained, without the noise of the broker and the client.
"""

from __future__ import annotations

import functools

import argparse
import os
import statistics
import sys
import time

import sqlalchemy as sa

from processor.processor_login import processor_database_url
from bench import system, workloads
from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from processor.service.batch import BatchReport, process_batch
from schemas.signing import Verifier

UNSIGNED = Verifier(master=None, required=False)  # signatures are tested in tests/integration/test_security.py
from processor.service.records import SourceRecord
from processor.stream.outbox import result_message


def records_of(outgoing: list, offset: int) -> list[SourceRecord]:
    return [SourceRecord(topic="micro", partition=0, offset=offset + i, key=r.key, value=r.value) for i, r in enumerate(outgoing)]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.micro")
    p.add_argument("--wallets", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--database", default="cw_bench_micro")
    p.add_argument("--workload", choices=("uniform", "hot_wallet", "mixed"), default="uniform")
    p.add_argument("--profile", default="", help="write a cProfile of the timed batches here")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--session-sql", default="", help="SQL run on every new database connection (e.g. SET plan_cache_mode = force_custom_plan)")
    p.add_argument("--analyze", action="store_true", help="ANALYZE after the set-up (fresh statistics before the timed batches)")
    return p.parse_args(argv)


class _Batches:
    """Feeds batches to the service on PostgreSQL, as records of one topic in offset order."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.offset = 0

    def apply(self, chunk: list) -> BatchReport:
        records = records_of(chunk, self.offset)
        self.offset += len(chunk)
        unit_of_work = functools.partial(PostgresUnitOfWork, self.engine)
        return process_batch(unit_of_work=unit_of_work, records=records, consumer_group="micro", max_request_bytes=1 << 20, verifier=UNSIGNED)

    def backend_cpu(self) -> float:
        """CPU seconds of this database's PostgreSQL backends (the server runs on this machine)."""
        with self.engine.connect() as c:
            pids = [row[0] for row in c.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))]
        return sum(system._proc_cpu_seconds(pid) for pid in pids)


def _timed(feed: _Batches, batches: list[list], *, profile: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """Wall time, processor CPU in process_batch, CPU building the messages and PostgreSQL CPU, per batch."""
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    walls, cpus, encodes, pg = [], [], [], []
    for chunk in batches:
        if profiler:
            profiler.enable()
        p0 = feed.backend_cpu()
        w0, c0 = time.perf_counter(), time.thread_time()
        report = feed.apply(chunk)
        c1 = time.thread_time()
        messages = [result_message(reply, topic="results").message for reply in report.replies]
        w1, c2 = time.perf_counter(), time.thread_time()
        if profiler:
            profiler.disable()
        assert len(messages) == len(chunk)
        pg.append(feed.backend_cpu() - p0)
        walls.append(w1 - w0)
        cpus.append(c1 - c0)
        encodes.append(c2 - c1)
    if profiler:
        profiler.dump_stats(profile)
    return walls, cpus, encodes, pg


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # The processor's role writes (the owner is held to row-level security, migration 0005).
    url = processor_database_url(system.fresh_database(os.environ["DATABASE_URL"], args.database))
    engine = sa.create_engine(url)
    if args.session_sql:
        @sa.event.listens_for(engine, "connect")
        def _session(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute(args.session_sql)
            dbapi_connection.commit()
    feed = _Batches(engine)
    try:
        for _, records in workloads.setup_phases(args.wallets):
            for start in range(0, len(records), args.batch):
                feed.apply(records[start : start + args.batch])
        if args.analyze:
            with engine.begin() as c:
                c.execute(sa.text("ANALYZE"))
        make = {"uniform": workloads.uniform, "hot_wallet": workloads.hot_wallet, "mixed": workloads.mixed}[args.workload]
        plan = make(count=args.batch * (args.batches + 2), wallets=args.wallets, seed=11)
        batches = [plan.records[i : i + args.batch] for i in range(0, len(plan.records), args.batch)]
        for chunk in batches[:2]:  # warm-up
            feed.apply(chunk)
        walls, cpus, encodes, pg = _timed(feed, batches[2:], profile=args.profile)
        n = args.batch
        print(
            f"{args.workload}: batch of {n}: wall {statistics.median(walls) * 1000:.1f} ms median "
            f"({n / statistics.median(walls):,.0f} tx/s), processor CPU {statistics.median(cpus) * 1e6 / n:.0f} us/tx in process_batch "
            f"+ {statistics.median(encodes) * 1e6 / n:.0f} us/tx building the messages; PostgreSQL backend CPU {statistics.median(pg) * 1e6 / n:.0f} us/tx"
        )
    finally:
        engine.dispose()
        if not args.keep:
            system.drop_database(os.environ["DATABASE_URL"], args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
