"""Reading an ingest file: JSONL or CSV lines, lazily, into requests ready to publish.

Each request is validated with the contract's models before anything is sent, so an invalid
line costs the user a line number and a reason, not a Failed result or a dead letter; memory
stays flat because only one line (one CSV group) is held at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.requests import RequestAdapter, partition_key, request_project_id
from schemas.results import result_key

__all__ = ["CSV_COLUMNS", "Outgoing", "ReadProgress", "RejectedLine", "detect_format", "read_requests"]

CSV_COLUMNS = ("reference_id", "project_id", "type", "from_wallet_id", "to_wallet_id", "wallet_id", "amount", "description")
CSV_REQUIRED = ("reference_id", "project_id", "type", "amount")
REASON_PART = 120  # characters of one location or message of a validation error in a reason


@dataclass(slots=True)
class Outgoing:
    """One request ready to publish, with what is needed to match and report its result."""

    key: bytes  # the Kafka key (partition key)
    value: bytes  # the request JSON
    result_key: str  # schemas.results.result_key: the key its result comes back under
    line: int  # first line of the request in the file (1-based)
    type: str  # request type, for barriers


@dataclass(slots=True)
class RejectedLine:
    """A line (a CSV group) that was not sent: it is not a valid request."""

    line: int
    reason: str
    text: str


class ReadProgress:
    """Bytes of the input read so far: the progress display's share of the file and its ETA."""

    def __init__(self, *, total: int) -> None:
        self.total = total
        self.read = 0

    @property
    def share(self) -> float:
        return self.read / self.total if self.total else 0.0


def detect_format(path: Path, *, given: str | None = None) -> str:
    """`given`, else the format the file's extension says; a ValueError names the flag to use."""
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name!r} from its extension: give --format jsonl|csv")


def read_requests(stream: io.BufferedReader, *, fmt: str, progress: ReadProgress | None = None) -> Iterator[Outgoing | RejectedLine]:
    """Requests from a binary stream, lazily, in file order."""
    progress = progress or ReadProgress(total=0)
    if fmt == "csv":
        return _csv_requests(stream, progress=progress)
    return _jsonl_requests(stream, progress=progress)


def _outgoing(raw: dict[str, Any], *, value: bytes | None, line: int) -> Outgoing:
    """Validate one request (raises ValueError / pydantic.ValidationError) and key it."""
    model = RequestAdapter.validate_python(raw)
    if value is None:
        value = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    key = result_key(project_id=request_project_id(model), reference_id=model.reference_id)
    return Outgoing(key=partition_key(model).encode(), value=value, result_key=key, line=line, type=model.type)


def _printable(value: object) -> str:
    """Input-derived text cut short and made writable as UTF-8 (lone surrogates and NUL
    escaped): the reason goes into the failed file and onto the terminal."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > REASON_PART:
        text = text[:REASON_PART] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _describe(error: Exception) -> str:
    """Why a line is not a valid request, in one line: where, and what the contract says.

    Kept here rather than shared with the processor's rejection messages: those are published
    on the results topic and bounded by its rules; this one is a report to the user only."""
    if not isinstance(error, ValidationError):
        return str(error)
    parts = [
        f"{'.'.join(_printable(part) for part in item['loc']) or 'request'}: {_printable(item['msg'])}"
        for item in error.errors(include_url=False, include_input=False)[:5]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _jsonl_requests(stream: io.BufferedReader, *, progress: ReadProgress) -> Iterator[Outgoing | RejectedLine]:
    for number, line in enumerate(stream, start=1):
        progress.read += len(line)
        text = line.strip()
        if not text:
            continue
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
            yield _outgoing(raw, value=text, line=number)
        except Exception as error:  # noqa: BLE001 - any bad line is reported, not fatal
            yield RejectedLine(line=number, reason=_describe(error), text=text.decode("utf-8", "replace"))


def _csv_operation(row: dict[str, str]) -> dict[str, str]:
    kind = row.get("type", "")
    amount = row.get("amount", "")
    if kind == "Transfer":
        return {"type": kind, "from_wallet_id": row.get("from_wallet_id", ""), "to_wallet_id": row.get("to_wallet_id", ""), "amount": amount}
    if kind in ("Issue", "Redeem"):
        return {"type": kind, "wallet_id": row.get("wallet_id", ""), "amount": amount}
    raise ValueError(f"type must be Issue, Transfer or Redeem, not {kind!r}")


def _csv_columns(header: list[str]) -> list[str]:
    """The header's column names; a ValueError (the whole file is unusable) for a bad header."""
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    missing = [name for name in CSV_REQUIRED if name not in columns]
    if unknown or missing:
        problems = ([f"unknown column(s) {unknown}"] if unknown else []) + ([f"missing column(s) {missing}"] if missing else [])
        raise ValueError(f"CSV header: {'; '.join(problems)}; columns are {', '.join(CSV_COLUMNS)}")
    return columns


def _csv_group(group: list[dict[str, str]], *, columns: list[str], line: int) -> Outgoing | RejectedLine:
    """One transaction.run of consecutive rows with the same (project_id, reference_id)."""
    first = group[0]
    try:
        request: dict[str, Any] = {
            "type": "transaction.run",
            "project_id": first["project_id"],
            "reference_id": first["reference_id"],
            "operations": [_csv_operation(row) for row in group],
        }
        if first.get("description"):
            request["description"] = first["description"]
        return _outgoing(request, value=None, line=line)
    except Exception as error:  # noqa: BLE001 - any bad group is reported, not fatal
        text = "\n".join(",".join(row.get(c, "") for c in columns) for row in group)
        return RejectedLine(line=line, reason=_describe(error), text=text)


def _decoded_lines(stream: io.BufferedReader, *, progress: ReadProgress) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        progress.read += len(raw)
        yield raw.decode("utf-8-sig" if number == 1 else "utf-8")


def _csv_requests(stream: io.BufferedReader, *, progress: ReadProgress) -> Iterator[Outgoing | RejectedLine]:
    reader = csv.reader(_decoded_lines(stream, progress=progress))
    header = next(reader, None)
    if header is None:
        return
    columns = _csv_columns(header)
    group: list[dict[str, str]] = []
    group_key: tuple[str, str] | None = None
    group_line = 0
    for values in reader:
        if not values or all(not v.strip() for v in values):
            continue
        row = {name: value.strip() for name, value in zip(columns, values, strict=False)}
        key = (row.get("project_id", ""), row.get("reference_id", ""))
        if group and key != group_key:
            yield _csv_group(group, columns=columns, line=group_line)
            group = []
        if not group:
            group_key, group_line = key, reader.line_num
        group.append(row)
    if group:
        yield _csv_group(group, columns=columns, line=group_line)
