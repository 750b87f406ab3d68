"""The processor's Prometheus metrics: one place that names them, with bounded labels.

Served at `/metrics` by processor/stream/health.py. Names follow Prometheus' conventions (the unit
in the name, `_total` on counters). Labels come from fixed sets only (a status, an error code of
the contract, a dead letter's kind, a partition number), never from record content: a hostile
record must not be able to mint a time series.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from processor.service.batch import BatchReport

BATCH_RECORDS: Final = Histogram(
    "cloudwallet_batch_records", "Records per batch the processor applied", buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
)
BATCH_SECONDS: Final = Histogram(
    "cloudwallet_batch_seconds",
    "Time of each stage of a batch: apply_and_commit (decode, load and lock, engine, write, PostgreSQL commit), publish (results out, acknowledged), kafka_commit",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_PHASE_SECONDS: Final = Histogram(
    "cloudwallet_batch_phase_seconds",
    "Time of each phase inside apply_and_commit: decode, load_and_lock (lock waits included), engine, write, commit",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONFLICT_RETRIES: Final = Counter("cloudwallet_batch_conflict_retries_total", "Batches run again after a conflict with another processor")
RESULTS: Final = Counter("cloudwallet_results_total", "Results published, by status and error code ('' when Completed)", ["status", "code"])
DEAD_LETTERS: Final = Counter("cloudwallet_dead_letters_total", "Records dead-lettered, by kind of reason", ["kind"])
CONSUMER_LAG: Final = Gauge("cloudwallet_consumer_lag_records", "Records of a partition not yet applied: the broker's high watermark minus the next offset", ["partition"])
BATCHES_IN_FLIGHT: Final = Gauge("cloudwallet_batches_in_flight", "Batches begun (stage 1) and not yet published and committed (stage 2)")

# A dead letter's reason is text made for people (processor/service/records.py); its kind, for a
# label, is the first of these phrases it contains.
_DEAD_LETTER_KINDS: Final = (
    ("could not be decoded", "undecodable"),
    ("empty record value", "empty"),
    ("-byte limit", "too_large"),
    ("expected a JSON object", "not_an_object"),
    ("cannot be answered", "unanswerable"),
    ("answer could not be built", "answer_failed"),
    ("failed in the database", "database"),
    ("nested deeper", "too_deep"),
    ("not UTF-8 JSON", "not_json"),
)


def dead_letter_kind(reason: str) -> str:
    for phrase, kind in _DEAD_LETTER_KINDS:
        if phrase in reason:
            return kind
    return "other"


def time_report(report: BatchReport) -> None:
    """How long the batch's phases took, and how often it ran again after a conflict."""
    for phase, seconds in report.phase_seconds.items():
        BATCH_PHASE_SECONDS.labels(phase=phase).observe(seconds)
    if report.conflict_retries:
        CONFLICT_RETRIES.inc(report.conflict_retries)


def count_report(report: BatchReport) -> None:
    """What one batch answered: its results by status and code, its dead letters by kind."""
    for reply in report.replies:
        error = reply.result.error
        RESULTS.labels(status=reply.result.status.value, code="" if error is None else error.code.value).inc()
    for letter in report.dead_letters:
        DEAD_LETTERS.labels(kind=dead_letter_kind(letter.reason)).inc()


def set_lag(lags: Iterable[tuple[int, int]]) -> None:
    """(partition, records behind) of the partitions a batch came from."""
    for partition, behind in lags:
        CONSUMER_LAG.labels(partition=str(partition)).set(max(behind, 0))


def forget_lag(partitions: Iterable[int]) -> None:
    """Partitions revoked: their lag is their next owner's to report, not a stale value here."""
    for partition in partitions:
        try:
            CONSUMER_LAG.remove(str(partition))
        except KeyError:  # never reported here
            pass
