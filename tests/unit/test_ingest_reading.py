"""Reading an ingest file: JSONL lines and CSV groups into keyed, validated requests; invalid
lines reported with their line number, never fatal; the bytes read counted for the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from processor.ingest.reading import Outgoing, ReadProgress, RejectedLine, detect_format, read_requests

HEADER = "reference_id,project_id,type,from_wallet_id,to_wallet_id,wallet_id,amount,description\n"


def stream(text: str) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(text.encode()))


def test_jsonl_lines_are_published_as_written_and_keyed_by_the_contract() -> None:
    line = '{"type": "transaction.run", "project_id": "p", "reference_id": "r-1", "operations": [{"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "1"}]}'
    body = line + "\n\n" + '{"type": "project.create", "project_id": "p", "reference_id": "pc", "name": "P"}\n'
    progress = ReadProgress(total=len(body))
    items = list(read_requests(stream(body), fmt="jsonl", progress=progress))
    assert [type(item) for item in items] == [Outgoing, Outgoing]
    first, second = items
    assert first.value == line.encode() and first.key == b"p/a" and first.result_key == "p/r-1" and first.line == 1
    assert first.type == "transaction.run" and second.line == 3 and second.type == "project.create"
    assert progress.read == len(body) and progress.share == 1.0


def test_invalid_jsonl_lines_are_reported_not_sent() -> None:
    body = 'not json\n[1, 2]\n{"type": "transaction.run", "project_id": "p", "reference_id": "f", "operations": [{"type": "Issue", "wallet_id": "a", "amount": 1.5}]}\n'
    items = list(read_requests(stream(body), fmt="jsonl"))
    assert all(isinstance(item, RejectedLine) for item in items)
    assert [item.line for item in items] == [1, 2, 3]
    assert "expected a JSON object, got list" in items[1].reason
    assert "operations" in items[2].reason and items[0].text == "not json"


def test_consecutive_csv_rows_of_one_reference_are_one_transaction() -> None:
    body = HEADER + "c-1,p,Issue,,,A,50,first\nc-2,p,Transfer,A,B,,5,two rows\nc-2,p,Transfer,B,fees,,1,\n\nc-3,p,Bogus,,,A,1,\nc-1,p,Redeem,,,A,1,\n"
    items = list(read_requests(stream(body), fmt="csv"))
    assert [type(item) for item in items] == [Outgoing, Outgoing, RejectedLine, Outgoing]
    grouped = json.loads(items[1].value)
    assert [op["to_wallet_id"] for op in grouped["operations"]] == ["B", "fees"] and grouped["description"] == "two rows"
    assert items[1].line == 3 and items[1].result_key == "p/c-2"
    assert items[2].line == 6 and "type must be Issue, Transfer or Redeem" in items[2].reason
    assert items[3].result_key == "p/c-1"  # a reference repeated later is a separate request


def test_a_bad_csv_header_stops_the_file() -> None:
    with pytest.raises(ValueError, match="unknown column"):
        list(read_requests(stream("reference_id,project_id,type,amount,colour\n"), fmt="csv"))


def test_the_format_comes_from_the_flag_or_the_extension() -> None:
    assert detect_format(Path("a.CSV")) == "csv" and detect_format(Path("a.ndjson")) == "jsonl"
    assert detect_format(Path("a.txt"), given="csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path("a.txt"))
