"""What an ingest run did: counts per status and error code, latencies, and the failed file.

Every request read is accounted for exactly once (answered, invalid, not delivered or without
a result), so that the summary, the exit status and `FILE.failed.jsonl` tell the user which
lines to look at and whether re-running is needed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.client.latency import LatencyHistogram
from processor.client.results_topic import result_status
from processor.ingest.reading import Outgoing, RejectedLine

__all__ = ["FailedRequests", "IngestSummary"]

DUPLICATE = "DuplicateReferenceId"


@dataclass(kw_only=True)
class IngestSummary:
    """The counts of one run; `as_dict` is FILE.summary.json, `text` what is printed."""

    file: str
    format: str
    requests: int = 0  # requests read from the file (valid or not)
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    duplicates_original: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    not_delivered: int = 0
    no_result: int = 0
    barriers: int = 0
    elapsed_s: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    failed_file: str | None = None
    compression: str | None = None

    @property
    def duplicates(self) -> int:
        return self.errors.get(DUPLICATE, 0)

    @property
    def failed(self) -> int:
        """Failed results, not counting repeats of spent references (re-runs change nothing)."""
        return self.statuses.get("Failed", 0) - self.duplicates

    def exit_code(self) -> int:
        if self.no_result or self.not_delivered:
            return 3
        if self.failed or self.invalid:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "requests": self.requests,
            "sent": self.sent,
            "answered": self.answered,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "completed": self.statuses.get("Completed", 0),
            "failed": self.failed,
            "already_applied": {"count": self.duplicates, "original_status": dict(self.duplicates_original)},
            "invalid_not_sent": self.invalid,
            "not_delivered": self.not_delivered,
            "no_result": self.no_result,
            "barriers": self.barriers,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_per_s": round(self.answered / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "latency_ms": self.latency.summary_ms(),
            "compression": self.compression,
            "failed_file": self.failed_file,
            "exit_code": self.exit_code(),
        }

    def text(self) -> str:
        failures = ", ".join(f"{c} {n:,}" for c, n in self.errors.most_common() if c != DUPLICATE)
        lines = [
            f"ingested {self.file} ({self.format}): {self.requests:,} requests read, {self.sent:,} sent, "
            f"{self.answered:,} answered in {self.elapsed_s:,.1f}s"
            + (f" ({self.answered / self.elapsed_s:,.0f}/s)" if self.elapsed_s > 0 else ""),
            f"  Completed: {self.statuses.get('Completed', 0):,}",
            f"  Failed:    {self.failed:,}" + (f"  ({failures})" if self.failed else ""),
        ]
        if self.duplicates:
            originals = ", ".join(f"{s} {n:,}" for s, n in self.duplicates_original.most_common())
            lines.append(
                f"  Already applied ({DUPLICATE}): {self.duplicates:,} - an earlier run (or an earlier line) "
                f"spent these reference IDs; nothing changed" + (f" (originally {originals})" if originals else "")
            )
        if self.invalid:
            lines.append(f"  Invalid, not sent: {self.invalid:,}")
        if self.not_delivered:
            lines.append(f"  Not delivered to Kafka: {self.not_delivered:,}")
        if self.no_result:
            lines.append(f"  No result in time: {self.no_result:,} (they may still be applied: re-run the same file, it is safe)")
        lat = self.latency.summary_ms()
        if self.latency.count:
            lines.append(f"  latency publish->result ms: p50 {lat['p50']}, p99 {lat['p99']}, p99.9 {lat['p999']}, max {lat['max']}")
        if self.failed_file and (self.failed or self.invalid or self.no_result or self.not_delivered):
            lines.append(f"  failed requests and their results: {self.failed_file}")
        return "\n".join(lines)


class FailedRequests:
    """Counts each outcome into the summary and writes every failure to FILE.failed.jsonl as it
    comes (memory stays flat); the file is removed when nothing failed."""

    def __init__(self, *, path: Path, summary: IngestSummary) -> None:
        self.path = path
        self.summary = summary
        self.written = 0
        self._out = path.open("w", encoding="utf-8")

    def close(self) -> None:
        """Close the file; remove it, and its mention in the summary, when it holds nothing."""
        self._out.close()
        if not self.written:
            self.path.unlink(missing_ok=True)
            self.summary.failed_file = None

    def result(self, item: Outgoing, latency_s: float, value: bytes, duplicate: bool) -> None:
        """A result arrived (the Ingestor's `on_result`)."""
        status, code = result_status(value)
        summary = self.summary
        summary.answered += 1
        summary.latency.add(latency_s)
        if duplicate:  # `value` is the original's result: nothing changed this time
            summary.statuses["Failed"] += 1
            summary.errors[DUPLICATE] += 1
            summary.duplicates_original[status] += 1
            return
        summary.statuses[status] += 1
        if code is not None:
            summary.errors[code] += 1
        if status != "Completed":
            self._write({"line": item.line, "key": item.result_key, "status": status, "result": json.loads(value)})

    def lost(self, item: Outgoing, reason: str) -> None:
        """The broker would not take the request (the Ingestor's `on_lost`)."""
        self.summary.not_delivered += 1
        self._write({"line": item.line, "key": item.result_key, "status": "NotDelivered", "reason": reason})

    def invalid(self, rejected: RejectedLine) -> None:
        self.summary.invalid += 1
        self._write({"line": rejected.line, "status": "Invalid", "reason": rejected.reason, "request": rejected.text})

    def unanswered(self, item: Outgoing, *, timeout: float) -> None:
        self.summary.no_result += 1
        self._write({"line": item.line, "key": item.result_key, "status": "NoResult",
                     "reason": f"no result within {timeout:g}s of the last one; re-run to find out (safe)"})

    def _write(self, entry: dict[str, Any]) -> None:
        self.written += 1
        self._out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
