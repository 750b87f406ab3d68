"""`python -m bench` in miniature (seconds, not minutes): every workload runs and the ledger and
the results topic are correct afterwards. Never a speed check: this machine's figures are the
benchmark's business, not a test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {"uniform", "scale_out", "hot_wallet", "mixed", "latency", "latency_light", "raw_kafka", "raw_postgresql", "per_request"}


def test_small_benchmark_is_correct(services, run_id: str, signing_master: Path, tmp_path: Path) -> None:
    database = f"cw_bench_smoke_{run_id}"
    output = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDWALLET_", "BENCH_"))}
    env.update({**services.kafka.environment(), "DATABASE_URL": services.admin_database_url})
    env["CLOUDWALLET_SIGNING_MASTER_KEY_FILE"] = str(signing_master)  # the bench is the operator: it makes its signing key
    if services.processor_env_file:  # the bench runs as the operator, its processor as itself
        env["CLOUDWALLET_PROCESSOR_ENV_FILE"] = services.processor_env_file
    argv = [
        sys.executable, "-m", "bench", "--quiet",
        "--wallets", "200", "--transactions", "2000", "--hot-transactions", "1000", "--mixed-transactions", "1000",
        "--latency-rate", "200", "--latency-seconds", "2", "--light-rate", "100", "--light-seconds", "1", "--baseline-transactions", "200", "--baseline-connections", "2",
        "--partitions", "4", "--database", database, "--output", str(output), "--log-dir", str(tmp_path / "logs"),
    ]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        found = json.loads(output.read_text())
        assert set(found["workloads"]) == WORKLOADS
        for name, figures in found["workloads"].items():
            assert figures["tx_per_s"] > 0, name
        correctness = found["correctness"]
        assert correctness["ok"] and all(correctness["checks"].values()), correctness
        assert correctness["results_topic"]["records"] == correctness["results_topic"]["expected"]
        assert correctness["database"]["transactions"] == correctness["database"]["expected_transactions"]
        for name in ("uniform", "scale_out", "hot_wallet", "latency", "latency_light"):
            w = found["workloads"][name]
            assert w["answered"] == w["transactions"] and w["statuses"] == {"Completed": w["transactions"]}, (name, w)
            assert w["cpu_us_per_tx"]["processor"] > 0 and w["cpu_us_per_tx"]["postgres"] > 0, (name, w["cpu_us_per_tx"])
        scale_out = found["workloads"]["scale_out"]
        assert scale_out["processors"] == 2 and found["workloads"]["uniform"]["processors"] == 1
        assert scale_out["ratio_vs_one"] == round(scale_out["tx_per_s"] / found["workloads"]["uniform"]["tx_per_s"], 3)
        assert scale_out["lock_wait_s"] >= 0 and scale_out["lock_wait_share"] >= 0
        assert set(found["targets"]) == {
            "uniform_vs_raw_kafka", "hot_vs_uniform", "latency_p99_ms", "latency_light_p50_ms", "scale_out_ratio_vs_one"
        }, found["targets"]
        mixed = found["workloads"]["mixed"]
        assert mixed["answered"] == mixed["transactions"]
        assert mixed["errors"] == {"InsufficientFunds": mixed["expected_failures"]}, mixed  # exactly the ones built to fail
        assert found["workloads"]["latency"]["p99_ms"] is not None
        assert "workload" in done.stdout and "correctness: OK" in done.stdout
    finally:
        url = make_url(services.admin_database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
