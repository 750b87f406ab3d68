"""Ingest's accounting: every outcome counted once, failures written as they come, repeats of
spent references counted as already applied (not failures), and the exit status from them."""

from __future__ import annotations

import json
from pathlib import Path

from processor.ingest.reading import Outgoing, RejectedLine
from processor.ingest.summary import FailedRequests, IngestSummary

COMPLETED = b'{"reference_id":"r","project_id":"p","type":"transaction.run","status":"Completed"}'
FAILED = b'{"reference_id":"r","project_id":"p","type":"transaction.run","status":"Failed","error":{"code":"InsufficientFunds","message":"no"}}'


def item(line: int) -> Outgoing:
    return Outgoing(key=b"p/a", value=b"{}", result_key=f"p/r-{line}", line=line, type="transaction.run")


def test_outcomes_are_counted_and_failures_written(tmp_path: Path) -> None:
    summary = IngestSummary(file="f.jsonl", format="jsonl", failed_file=str(tmp_path / "failed.jsonl"))
    failures = FailedRequests(path=tmp_path / "failed.jsonl", summary=summary)
    failures.result(item(1), 0.010, COMPLETED, False)
    failures.result(item(2), 0.020, FAILED, False)
    failures.result(item(3), 0.030, COMPLETED, True)  # a repeat: the original's result
    failures.invalid(RejectedLine(line=4, reason="bad", text="x"))
    failures.unanswered(item(5), timeout=30)
    failures.lost(item(6), "not published")
    failures.close()
    found = summary.as_dict()
    assert found["answered"] == 3 and found["completed"] == 1 and found["failed"] == 1
    assert found["errors"] == {"InsufficientFunds": 1, "DuplicateReferenceId": 1}
    assert found["already_applied"] == {"count": 1, "original_status": {"Completed": 1}}
    assert found["invalid_not_sent"] == 1 and found["no_result"] == 1 and found["not_delivered"] == 1
    assert found["exit_code"] == 3 and found["latency_ms"]["max"] == 30.0
    written = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert [entry["status"] for entry in written] == ["Failed", "Invalid", "NoResult", "NotDelivered"]
    assert written[0]["key"] == "p/r-2" and written[0]["result"]["error"]["code"] == "InsufficientFunds"
    text = summary.text()
    assert "Failed:    1  (InsufficientFunds 1)" in text and "Already applied (DuplicateReferenceId): 1" in text
    assert "(originally Completed 1)" in text and f"failed requests and their results: {tmp_path / 'failed.jsonl'}" in text


def test_a_rerun_is_not_a_failure_and_leaves_no_failed_file(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"
    summary = IngestSummary(file="f.jsonl", format="jsonl", failed_file=str(path))
    failures = FailedRequests(path=path, summary=summary)
    failures.result(item(1), 0.01, FAILED, True)
    failures.close()
    assert not path.exists() and summary.failed_file is None
    assert summary.failed == 0 and summary.exit_code() == 0
    assert summary.as_dict()["already_applied"] == {"count": 1, "original_status": {"Failed": 1}}


def test_exit_codes() -> None:
    summary = IngestSummary(file="f", format="csv")
    assert summary.exit_code() == 0
    summary.invalid = 1
    assert summary.exit_code() == 1
    summary.no_result = 1
    assert summary.exit_code() == 3
