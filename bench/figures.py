"""The figures of one workload in the report: what a run through Kafka gave (rates, latencies,
statuses) and the CPU it cost per role. Kept apart so that every workload reports the same keys."""

from __future__ import annotations

from typing import Any

from bench.measure import Run


def cpu_figures(used: dict[str, Any], *, answered: int, processors: int) -> dict[str, Any]:
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


def run_figures(run: Run, *, operations: int, transactions: int) -> dict[str, Any]:
    """A run through Kafka as the report shows it: counts, rates, latency percentiles, outcomes, sizes.

    Operations per second scale with the share answered, so a run with losses is not flattered."""
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
