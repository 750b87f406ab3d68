"""`cloudwallet ingest` end to end: JSONL and CSV files through a real processor, every result
accounted for, and a second run of the same file changes nothing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tracemalloc
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from processor.ingest.reading import Outgoing, RejectedLine, read_requests
from processor.storage.audit import audit_ledger

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


async def ingest(topology, path: Path, *extra: str) -> tuple[int, dict, str]:
    """Run `cloudwallet ingest FILE` as a user would; return (exit code, summary, output)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLOUDWALLET_")}, **topology.client_env()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "ingest", str(path), "--quiet", "--timeout", "30", *extra,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    summary = json.loads(path.with_name(path.name + ".summary.json").read_text())
    return process.returncode, summary, output.decode()


def snapshot(db: sa.Engine, project: str) -> dict:
    with db.connect() as c:
        return {
            "balances": dict(c.execute(sa.text("SELECT wallet_id, balance::text FROM wallets WHERE project_id = :p"), {"p": project}).all()),
            **{
                table: c.execute(sa.text(f"SELECT count(*) FROM {table} WHERE project_id = :p"), {"p": project}).scalar_one()
                for table in ("transactions", "wallet_entries", "processed_requests", "customers")
            },
        }


def setup_lines(project: str) -> list[dict]:
    return [
        {"type": "project.create", "project_id": project, "name": "Ingest", "reference_id": "p"},
        {"type": "asset.create", "project_id": project, "asset_id": "usd", "code": "USD", "name": "Dollar", "fractions": 100, "reference_id": "a"},
        {"type": "customer.upsert", "project_id": project, "customer_id": "alice@example.com", "name": "Alice", "reference_id": "c1"},
        {"type": "wallet.open", "project_id": project, "customer_id": "alice@example.com", "asset_id": "usd", "wallet_id": "A", "reference_id": "wa"},
        {"type": "wallet.open", "project_id": project, "customer_id": "alice@example.com", "asset_id": "usd", "wallet_id": "B", "reference_id": "wb"},
        {"type": "system_wallet.open", "project_id": project, "asset_id": "usd", "wallet_id": "fees", "reference_id": "wf"},
        {"type": "transaction.run", "project_id": project, "reference_id": "fund", "operations": [{"type": "Issue", "wallet_id": "A", "amount": "100"}]},
    ]


async def test_jsonl_end_to_end_and_a_rerun_changes_nothing(topology, processors, db, tmp_path: Path) -> None:
    processors("a")
    project = f"ing-{uuid.uuid4().hex[:8]}"
    lines = [json.dumps(r) for r in setup_lines(project)]
    lines.append(json.dumps({"type": "transaction.run", "project_id": project, "reference_id": "move", "operations": [
        {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "30"}]}))
    # Keyed by A like "move" (the first wallet they debit): same partition, applied in file order.
    lines += [
        json.dumps({"type": "transaction.run", "project_id": project, "reference_id": f"back-{i}", "operations": [
            {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "1.00"},
            {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "fees", "amount": "0.10"}]})
        for i in range(10)
    ]
    lines.append(json.dumps({"type": "transaction.run", "project_id": project, "reference_id": "too-much", "operations": [
        {"type": "Transfer", "from_wallet_id": "B", "to_wallet_id": "A", "amount": "1000"}]}))
    lines.append('{"type": "transaction.run", "project_id": "%s", "reference_id": "float", "operations": [{"type": "Issue", "wallet_id": "A", "amount": 1.5}]}' % project)
    lines.append("this is not JSON")
    lines.append("")  # blank lines are skipped
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code, summary, output = await ingest(topology, path)
    assert code == 1, output  # one failed request and two invalid lines
    assert summary["requests"] == 21 and summary["sent"] == 19 and summary["answered"] == 19, summary
    assert summary["completed"] == 18 and summary["failed"] == 1 and summary["errors"] == {"InsufficientFunds": 1}, summary
    assert summary["invalid_not_sent"] == 2 and summary["no_result"] == 0 and summary["already_applied"]["count"] == 0
    assert summary["barriers"] >= 5, summary  # project -> asset -> customer -> wallet -> system wallet -> transactions
    assert summary["latency_ms"]["p50"] is not None and summary["throughput_per_s"] > 0
    failed = [json.loads(line) for line in Path(summary["failed_file"]).read_text().splitlines()]
    assert sorted(f["status"] for f in failed) == ["Failed", "Invalid", "Invalid"]
    too_much = next(f for f in failed if f["status"] == "Failed")
    assert too_much["key"] == f"{project}/too-much" and too_much["result"]["error"]["code"] == "InsufficientFunds"
    assert {f["line"] for f in failed if f["status"] == "Invalid"} == {20, 21}
    assert "Completed: 18" in output and "Invalid, not sent: 2" in output

    before = snapshot(db, project)
    assert before["balances"] == {"A": str(10000 - 3000 - 10 * 110), "B": str(3000 + 1000), "fees": "100"}
    assert before["transactions"] == 13 and before["processed_requests"] == 19
    assert audit_ledger(db, project_id=project).ok

    code, again, output = await ingest(topology, path)
    assert code == 1, output  # the same two invalid lines; nothing failed
    assert again["answered"] == 19 and again["completed"] == 0 and again["failed"] == 0
    assert again["already_applied"] == {"count": 19, "original_status": {"Completed": 18, "Failed": 1}}, again
    assert "Already applied (DuplicateReferenceId): 19" in output and "nothing changed" in output
    assert snapshot(db, project) == before


async def test_csv_groups_rows_into_transactions_and_a_rerun_changes_nothing(topology, processors, db, tmp_path: Path) -> None:
    processors("a")
    project = f"csv-{uuid.uuid4().hex[:8]}"
    setup = tmp_path / "setup.jsonl"
    setup.write_text("\n".join(json.dumps(r) for r in setup_lines(project)) + "\n")
    code, summary, output = await ingest(topology, setup)
    assert code == 0 and summary["completed"] == 7, output

    path = tmp_path / "transfers.csv"
    path.write_text(
        "reference_id,project_id,type,from_wallet_id,to_wallet_id,wallet_id,amount,description\n"
        f"c-1,{project},Issue,,,A,50,first\n"
        f"c-2,{project},Transfer,A,B,,5,two rows\n"
        f"c-2,{project},Transfer,B,fees,,1,\n"
        # Same key (wallet A) as c-1 and c-2, so it runs after them: order holds per key only.
        f"c-3,{project},Redeem,,,A,2.50,\n"
        f"c-4,{project},Bogus,,,A,1,\n"
        f"c-5,{project},Transfer,A,B,,0.001,\n"
    )
    code, summary, output = await ingest(topology, path)
    assert code == 1, output
    assert summary["requests"] == 5 and summary["sent"] == 4 and summary["invalid_not_sent"] == 1, summary
    assert summary["completed"] == 3 and summary["errors"] == {"ValidationError": 1}, summary  # 0.001 of a cents asset
    with db.connect() as c:
        operations = c.execute(
            sa.text("SELECT operations, description FROM transactions WHERE project_id = :p AND reference_id = 'c-2'"), {"p": project}
        ).one()
    assert [op["type"] for op in operations[0]] == ["Transfer", "Transfer"] and operations[1] == "two rows"
    before = snapshot(db, project)
    assert before["balances"] == {"A": str(10000 + 5000 - 500 - 250), "B": str(500 - 100), "fees": "100"}

    code, again, output = await ingest(topology, path)
    assert again["already_applied"]["count"] == 4 and again["completed"] == 0 and again["failed"] == 0, again
    assert snapshot(db, project) == before
    assert audit_ledger(db, project_id=project).ok


def test_reading_is_lazy_and_memory_stays_flat() -> None:
    """The reader holds one line (one CSV group) at a time, whatever the file's size."""

    def jsonl(lines: int) -> io.BufferedReader:
        body = "".join(
            json.dumps({"type": "transaction.run", "project_id": "p", "reference_id": f"r-{i}",
                        "operations": [{"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "1"}]}) + "\n"
            for i in range(lines)
        )
        return io.BufferedReader(io.BytesIO(body.encode()))

    def peak(lines: int) -> int:
        stream = jsonl(lines)
        tracemalloc.start()
        count = 0
        for item in read_requests(stream, fmt="jsonl"):
            assert isinstance(item, Outgoing) and not isinstance(item, RejectedLine)
            count += 1
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == lines
        return top

    small, large = peak(1_000), peak(20_000)
    assert large < small * 2 + 200_000, (small, large)  # 20x the lines, not 20x the memory
