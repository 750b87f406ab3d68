"""`python -m bench`: the whole benchmark in one run, on the local stack (or KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL), from an empty database. See docs/benchmark.md for what each figure means.

Sizes are flags (or BENCH_<FLAG> environment variables, e.g. BENCH_TRANSACTIONS=50000).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench.report import ROOT, finish, say
from bench.session import BenchSession
from processor.settings import KafkaSettings, SettingsError, load

WORKLOADS = ("uniform", "scale_out", "hot_wallet", "mixed", "latency", "latency_light", "raw_kafka", "raw_postgresql", "per_request")


def _env_default(name: str, default: Any) -> Any:
    """A flag's default from BENCH_<NAME> if set (typed as the built-in default), so that `make bench` can be sized without flags."""
    value = os.environ.get(f"BENCH_{name.upper()}")
    if value is None:
        return default
    return type(default)(value) if default is not None else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, with the raw runs' sizes defaulting to --transactions and --only checked against WORKLOADS."""
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


def main(argv: list[str] | None = None) -> int:
    """The whole benchmark: check the stack is configured (exit 2 if not), run every selected phase,
    then write and print the report (exit 1 if the ledger or the results topic was found wrong)."""
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
    session = BenchSession(args, kafka=kafka, admin_url=admin_url)
    output = session.run()
    return finish(output, started=session.started, path=args.output)
