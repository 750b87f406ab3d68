"""What a bench run shows and writes: progress lines on stderr, the skeleton of the JSON report,
the ratios against the limits and the baseline, the goals of docs/benchmark.md, the table and
the final lines on stdout. Apart from the session so that the report's shape lives in one place."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the clone: the defaults of --output and --log-dir live in it

# The goals of docs/benchmark.md, as ratios measured in one run ("at_least" or "at_most").
TARGETS = {
    "uniform_vs_raw_kafka": ("at_least", 0.5),
    "hot_vs_uniform": ("at_least", 0.7),
    "latency_p99_ms": ("at_most", 50.0),  # at --latency-rate (2,000 tx/s) offered
    "latency_light_p50_ms": ("at_most", 10.0),  # at --light-rate (500 tx/s) offered
    "scale_out_ratio_vs_one": ("at_least", 1.0),
    "late_vs_early": ("at_least", 0.8),  # make bench-long: the last tenth's rate against the first's
}

# The limits (nothing but Kafka, nothing but PostgreSQL) and the baseline the processor's rates are set against.
LIMITS = ("raw_kafka", "raw_postgresql", "per_request")
# The workloads through the processor, in the order of the report.
THROUGH_PROCESSOR = ("uniform", "scale_out", "hot_wallet", "mixed", "latency", "latency_light")


def say(text: str) -> None:
    """A progress line: on stderr, so that stdout carries the report alone."""
    print(text, file=sys.stderr, flush=True)


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def new_output(args: argparse.Namespace) -> dict[str, Any]:
    """The report before any workload ran: when, on what machine, with which flags and settings.

    The keys the phases fill later ("workloads", "setup", "targets") are there from the start so
    that their place in the JSON does not depend on which workloads ran."""
    return {
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


def add_ratios(found: dict[str, Any]) -> None:
    """Each processor workload's rate against every limit that ran, and the raw PostgreSQL rate
    against the per-request baseline: the figures docs/benchmark.md compares."""
    limits = {name: found[name]["tx_per_s"] for name in LIMITS if name in found}
    for name in THROUGH_PROCESSOR:
        if name in found:
            found[name]["ratios"] = {f"vs_{limit}": round(found[name]["tx_per_s"] / rate, 3) for limit, rate in limits.items() if rate}
    if "raw_postgresql" in found and "per_request" in found:
        found["raw_postgresql"]["ratios"] = {"vs_per_request": round(found["raw_postgresql"]["tx_per_s"] / found["per_request"]["tx_per_s"], 3)}


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
    """The workloads as a table of rates, latencies and ratios (returned: it goes to stdout and into the JSON)."""
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


def finish(output: dict[str, Any], *, started: float, path: Path) -> int:
    """Complete the report (ratios, targets, elapsed time, table), write it to `path`, print the
    table, the targets and the correctness verdict. The exit code: 1 if the ledger was found wrong."""
    found = output["workloads"]
    add_ratios(found)
    output["targets"] = targets_met(found)
    output["elapsed_s"] = round(time.monotonic() - started, 1)
    table = print_table(output)
    output["table"] = table.splitlines()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2) + "\n")
    print(table)
    for name, target in output["targets"].items():
        print(f"target {name}: {target['measured']} ({target['rule'].replace('_', ' ')} {target['target']}) {'met' if target['met'] else 'NOT met'}")
    if "correctness" in output:
        print(f"correctness: {'OK' if output['correctness']['ok'] else 'FAILED'} {json.dumps(output['correctness']['checks'])}")
    print(f"written {path} ({output['elapsed_s']}s)")
    return 0 if output.get("correctness", {"ok": True})["ok"] else 1
