"""`cloudwallet ingest FILE`: stream a file of requests through Kafka and account for every result.

Input formats (chosen by extension, or `--format`):

* JSONL — one request object per line, exactly as on the wire (any request type). Blank lines
  are skipped. The line's bytes are published unchanged, so operations are echoed as written.
* CSV — transactions only. A header row names the columns (any order):
  `reference_id,project_id,type,from_wallet_id,to_wallet_id,wallet_id,amount[,description]`,
  where `type` is `Issue`, `Transfer` or `Redeem`. One operation per row; consecutive rows with
  the same `(project_id, reference_id)` form ONE `transaction.run`, operations in row order
  (`description` is taken from the group's first row). A reference that appears again later in
  the file, not adjacent, is a separate request (and is answered DuplicateReferenceId).

What it does, with memory flat for any file size:

1. reads the file lazily, a line (CSV: a reference group) at a time; each request is validated
   locally with the contract's models — an invalid line is reported (with its line number) and
   not sent;
2. publishes with producer batching and compression (lz4 when the `cramjam` codec library is
   installed), keyed as the contract says (`schemas.requests.partition_key`), keeping at most
   `--window` requests in flight;
3. consumes the results topic (listening from its end before the first publish) and matches
   each result by its key `"{project_id}/{reference_id}"`;
4. order: requests are ordered per Kafka key only. So that a file which first creates projects,
   assets, customers and wallets and then transacts on them just works, ingest waits for every
   in-flight result whenever the request `type` changes from one request to the next (a
   *barrier*); `--no-barriers` turns this off;
5. writes a summary (counts per status and error code, throughput, latency percentiles) to
   stdout and `FILE.summary.json`, and the failed requests' results to `FILE.failed.jsonl`.

Re-running is safe: every request carries its reference ID, so a second run changes nothing;
its results are DuplicateReferenceId, which the summary counts separately ("already applied"),
with the status of the original, and does not list as failures.

Exit status: 0 every request answered and none failed (duplicates are not failures); 1 some
requests failed or were invalid; 3 some results never arrived (`--timeout`); 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from processor.client import header
from processor.client.connection import KafkaConnection
from schemas.signing import SigningKey
from schemas.results import DUPLICATE_HEADER, result_key

__all__ = [
    "IngestSummary",
    "Ingestor",
    "LatencyHistogram",
    "Outgoing",
    "Rejected",
    "ingest_file",
    "read_requests",
    "register",
    "result_status",
]

CSV_COLUMNS = ("reference_id", "project_id", "type", "from_wallet_id", "to_wallet_id", "wallet_id", "amount", "description")
CSV_REQUIRED = ("reference_id", "project_id", "type", "amount")


# ----------------------------------------------------------------------------------- records


@dataclass(slots=True)
class Outgoing:
    """One request ready to publish."""

    key: bytes  # the Kafka key (partition key)
    value: bytes  # the request JSON
    result_key: str  # "{project_id}/{reference_id}": the key its result comes back under
    line: int  # first line of the request in the file (1-based)
    type: str  # request type, for barriers


@dataclass(slots=True)
class Rejected:
    """A request that was not sent: it is not a valid request."""

    line: int
    reason: str
    text: str


def result_status(value: bytes) -> tuple[str, str | None]:
    """(status, error code) of a result's JSON, cheaply.

    Results are written by pydantic in field order (reference_id, project_id, type, status,
    error, ...), and a JSON string can never contain an unescaped `"status":"`, so the first
    match is the result's own status. Anything unexpected falls back to a full parse.
    """
    try:
        start = value.index(b'"status":"') + 10
        status = value[start : value.index(b'"', start)].decode()
        if status == "Completed":
            return status, None
        start = value.index(b'"error":{"code":"', start) + 17
        return status, value[start : value.index(b'"', start)].decode()
    except ValueError:
        data = json.loads(value)
        return str(data.get("status")), (data.get("error") or {}).get("code")


class LatencyHistogram:
    """Latencies in log-spaced buckets (about 1% wide): fixed memory for any count."""

    RATIO = 1.01
    MIN_S = 1e-5

    def __init__(self) -> None:
        self._log_ratio = math.log(self.RATIO)
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        self.buckets[int(math.log(max(seconds, self.MIN_S) / self.MIN_S) / self._log_ratio)] += 1

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0..1) in seconds (the bucket's upper edge, capped at the max)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return min(self.MIN_S * self.RATIO ** (bucket + 1), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "p50": ms(self.percentile(0.50)),
            "p90": ms(self.percentile(0.90)),
            "p99": ms(self.percentile(0.99)),
            "p999": ms(self.percentile(0.999)),
            "max": ms(self.max if self.count else None),
            "mean": ms(self.total / self.count if self.count else None),
        }


# ----------------------------------------------------------------------------------- reading


def _outgoing(raw: dict[str, Any], value: bytes | None, line: int) -> Outgoing:
    """Validate one request (raises ValueError / pydantic.ValidationError) and key it."""
    from schemas.requests import request_project_id
    from schemas.requests import RequestAdapter, partition_key

    model = RequestAdapter.validate_python(raw)
    project_id = request_project_id(model)
    if value is None:
        value = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    key = result_key(project_id=project_id, reference_id=model.reference_id)
    return Outgoing(key=partition_key(model).encode(), value=value, result_key=key, line=line, type=model.type)


def _describe(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        from processor.service.records import describe_validation_error

        return describe_validation_error(error)
    return str(error)


class Progress:
    """Bytes of the input read so far (for the progress bar's percentage and ETA)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read = 0


def _jsonl_requests(stream: io.BufferedReader, progress: Progress) -> Iterator[Outgoing | Rejected]:
    for number, line in enumerate(stream, start=1):
        progress.read += len(line)
        text = line.strip()
        if not text:
            continue
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
            yield _outgoing(raw, text, number)
        except Exception as error:  # noqa: BLE001 - any bad line is reported, not fatal
            yield Rejected(line=number, reason=_describe(error), text=text.decode("utf-8", "replace"))


def _csv_operation(row: dict[str, str]) -> dict[str, str]:
    kind = row.get("type", "")
    amount = row.get("amount", "")
    if kind == "Transfer":
        return {"type": kind, "from_wallet_id": row.get("from_wallet_id", ""), "to_wallet_id": row.get("to_wallet_id", ""), "amount": amount}
    if kind in ("Issue", "Redeem"):
        return {"type": kind, "wallet_id": row.get("wallet_id", ""), "amount": amount}
    raise ValueError(f"type must be Issue, Transfer or Redeem, not {kind!r}")


def _csv_requests(stream: io.BufferedReader, progress: Progress) -> Iterator[Outgoing | Rejected]:
    line_number = 0

    def lines() -> Iterator[str]:
        nonlocal line_number
        for raw in stream:
            progress.read += len(raw)
            line_number += 1
            yield raw.decode("utf-8-sig" if line_number == 1 else "utf-8")

    reader = csv.reader(lines())
    header = next(reader, None)
    if header is None:
        return
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    missing = [name for name in CSV_REQUIRED if name not in columns]
    if unknown or missing:
        problems = ([f"unknown column(s) {unknown}"] if unknown else []) + ([f"missing column(s) {missing}"] if missing else [])
        raise ValueError(f"CSV header: {'; '.join(problems)}; columns are {', '.join(CSV_COLUMNS)}")

    group: list[dict[str, str]] = []
    group_key: tuple[str, str] | None = None
    group_line = 0

    def flush() -> Outgoing | Rejected:
        first = group[0]
        text = "\n".join(",".join(row.get(c, "") for c in columns) for row in group)
        try:
            request: dict[str, Any] = {
                "type": "transaction.run",
                "project_id": first["project_id"],
                "reference_id": first["reference_id"],
                "operations": [_csv_operation(row) for row in group],
            }
            if first.get("description"):
                request["description"] = first["description"]
            return _outgoing(request, None, group_line)
        except Exception as error:  # noqa: BLE001
            return Rejected(line=group_line, reason=_describe(error), text=text)

    for values in reader:
        if not values or all(not v.strip() for v in values):
            continue
        row = {name: value.strip() for name, value in zip(columns, values, strict=False)}
        key = (row.get("project_id", ""), row.get("reference_id", ""))
        if group and key != group_key:
            yield flush()
            group = []
        if not group:
            group_key, group_line = key, reader.line_num
        group.append(row)
    if group:
        yield flush()


def detect_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name!r} from its extension: give --format jsonl|csv")


def read_requests(stream: io.BufferedReader, *, fmt: str, progress: Progress | None = None) -> Iterator[Outgoing | Rejected]:
    """Requests from a binary stream, lazily, in file order."""
    progress = progress or Progress(0)
    if fmt == "csv":
        return _csv_requests(stream, progress)
    return _jsonl_requests(stream, progress)


# ----------------------------------------------------------------------------------- the pipeline


@dataclass(slots=True)
class _Pending:
    tag: Any
    sent_at: float


class Ingestor:
    """Publish requests with a bounded in-flight window; match their results by key.

    `on_result(tag, latency_s, value, duplicate)` runs for every matched result (`duplicate`:
    the record answers a repeat of a spent reference, and `value` is the original's result) and
    `on_lost(tag, reason)` for a request the broker would not take (after the producer's
    retries). Results for keys not in flight (another client's, an earlier run's) are ignored.
    """

    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        requests_topic: str,
        results_topic: str,
        on_result: Callable[[Any, float, bytes, bool], None],
        on_lost: Callable[[Any, str], None] | None = None,
        window: int = 10_000,
        compression: str | None = "lz4",
        linger_ms: int = 5,
        max_batch_size: int = 512 * 1024,
        client_id: str = "cloudwallet-ingest",
        signing_key: SigningKey | None = None,
    ) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.requests_topic = requests_topic
        self.results_topic = results_topic
        self.on_result = on_result
        self.on_lost = on_lost
        self.signing_key = signing_key  # signs every request (schemas/signing.py)
        self.window = window
        self.compression = _usable_compression(compression)
        self._producer = AIOKafkaProducer(
            **kafka.options(),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=self.compression,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            max_request_size=max(max_batch_size, 1_048_576),
        )
        self._consumer = AIOKafkaConsumer(
            **kafka.options(),
            client_id=f"{client_id}-results",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1_048_576,
        )
        self.pending: dict[str, _Pending | list[_Pending]] = {}
        self.in_flight = 0
        self.sent = 0
        self.answered = 0
        self.result_bytes = 0
        self.last_result_at = time.monotonic()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> Ingestor:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from processor.client import follow_from_end

        await self._producer.start()
        await self._consumer.start()
        try:
            # Listen from the end of the results topic before the first request goes out.
            await follow_from_end(self._consumer, topic=self.results_topic)
        except RuntimeError:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._dispatch(), name="ingest-results")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        await self._consumer.stop()
        await self._producer.stop()

    def _check(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"reading results failed: {self._failure!r}") from self._failure

    async def submit(self, item: Outgoing, tag: Any = None) -> None:
        """Publish one request once the window has room; its result goes to `on_result`."""
        while self.in_flight >= self.window:
            self._check()
            self._space.clear()
            await self._space.wait()
        self._check()
        pending = _Pending(tag if tag is not None else item, time.monotonic())
        current = self.pending.get(item.result_key)
        if current is None:
            self.pending[item.result_key] = pending
        elif isinstance(current, list):
            current.append(pending)
        else:
            self.pending[item.result_key] = [current, pending]
        self.in_flight += 1
        self._idle.clear()
        self.sent += 1
        headers = self.signing_key.headers(item.value) if self.signing_key is not None else None
        delivery = await self._producer.send(self.requests_topic, value=item.value, key=item.key, headers=headers)
        delivery.add_done_callback(lambda done, key=item.result_key: self._delivered(done, key))

    def _delivered(self, delivery: asyncio.Future[Any], key: str) -> None:
        if delivery.cancelled() or delivery.exception() is None:
            return
        pending = self._take(key)
        if pending is not None:
            if self.on_lost is not None:
                self.on_lost(pending.tag, f"not published: {delivery.exception()!r}")

    def _take(self, key: str) -> _Pending | None:
        current = self.pending.get(key)
        if current is None:
            return None
        if isinstance(current, list):
            found = current.pop(0)
            if len(current) == 1:
                self.pending[key] = current[0]
        else:
            found = current
            del self.pending[key]
        self.in_flight -= 1
        if self.in_flight < self.window:
            self._space.set()
        if not self.in_flight:
            self._idle.set()
        return found

    async def flush(self) -> None:
        await self._producer.flush()

    async def _dispatch(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        key = record.key.decode() if record.key else ""
                        pending = self._take(key)
                        if pending is None:
                            continue
                        self.answered += 1
                        self.last_result_at = now
                        value = record.value or b""
                        self.result_bytes += len(value)
                        self.on_result(pending.tag, now - pending.sent_at, value, header(record, DUPLICATE_HEADER) is not None)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - surfaced to the sender
            self._failure = error
            self._space.set()
            self._idle.set()
            raise

    async def drain(self, *, idle_timeout: float) -> list[Any]:
        """Wait for every in-flight result; give up after `idle_timeout` s without any result.

        Returns the tags of the requests still unanswered (and forgets them).
        """
        await self._producer.flush()
        self.last_result_at = max(self.last_result_at, time.monotonic())
        while self.in_flight:
            self._check()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                if time.monotonic() - self.last_result_at > idle_timeout:
                    break
        self._check()
        missing: list[Any] = []
        for pending in self.pending.values():
            for item in pending if isinstance(pending, list) else [pending]:
                missing.append(item.tag)
        self.pending.clear()
        self.in_flight = 0
        self._idle.set()
        self._space.set()
        return missing


def _usable_compression(wanted: str | None) -> str | None:
    if wanted in (None, "", "none"):
        return None
    if wanted == "gzip":
        return wanted
    from aiokafka import codec

    available = {"lz4": codec.has_lz4(), "zstd": codec.has_zstd(), "snappy": codec.has_snappy()}
    if wanted not in available:
        raise ValueError(f"unknown compression {wanted!r}: lz4, zstd, snappy, gzip or none")
    if not available[wanted]:
        print(f"ingest: {wanted} compression needs the 'cramjam' package; publishing uncompressed", file=sys.stderr)
        return None
    return wanted


# ----------------------------------------------------------------------------------- accounting


@dataclass(kw_only=True)
class IngestSummary:
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
        return self.errors.get("DuplicateReferenceId", 0)

    @property
    def failed(self) -> int:
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
        lines = [
            f"ingested {self.file} ({self.format}): {self.requests:,} requests read, {self.sent:,} sent, "
            f"{self.answered:,} answered in {self.elapsed_s:,.1f}s"
            + (f" ({self.answered / self.elapsed_s:,.0f}/s)" if self.elapsed_s > 0 else ""),
            f"  Completed: {self.statuses.get('Completed', 0):,}",
            f"  Failed:    {self.failed:,}" + (f"  ({', '.join(f'{c} {n:,}' for c, n in self.errors.most_common() if c != 'DuplicateReferenceId')})" if self.failed else ""),
        ]
        if self.duplicates:
            originals = ", ".join(f"{s} {n:,}" for s, n in self.duplicates_original.most_common())
            lines.append(
                f"  Already applied (DuplicateReferenceId): {self.duplicates:,} - an earlier run (or an earlier line) "
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


class _ProgressBar:
    def __init__(self, stream: TextIO, progress: Progress, summary: IngestSummary, ingestor: Ingestor, enabled: bool) -> None:
        self.stream = stream
        self.progress = progress
        self.summary = summary
        self.ingestor = ingestor
        self.enabled = enabled
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_shown = 0.0
        self.window: list[tuple[float, int]] = []

    def show(self, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last_shown < (0.5 if self.tty else 5.0):
            return
        self.last_shown = now
        done = self.ingestor.answered + self.summary.invalid
        self.window.append((now, done))
        while len(self.window) > 2 and now - self.window[0][0] > 10:
            self.window.pop(0)
        t0, d0 = self.window[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        elapsed = now - self.started
        fraction = self.progress.read / self.progress.total if self.progress.total else 0.0
        eta = "--:--"
        if 0 < fraction and rate > 0:
            expected_total = self.summary.requests / fraction
            eta = _clock(max(0.0, expected_total - done) / rate)
        width = 24
        filled = int(width * min(fraction, 1.0))
        bar = "#" * filled + "." * (width - filled)
        text = (
            f"ingest [{bar}] {fraction * 100:5.1f}%  sent {self.ingestor.sent:,}  done {done:,}  "
            f"in flight {self.ingestor.in_flight:,}  {rate:,.0f}/s  elapsed {_clock(elapsed)}  ETA {eta}"
        )
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else "\x1b[K"))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def ingest_file(
    path: Path,
    *,
    kafka: KafkaConnection,
    requests_topic: str,
    results_topic: str,
    signing_key: SigningKey | None = None,
    fmt: str | None = None,
    window: int = 10_000,
    compression: str | None = "lz4",
    linger_ms: int = 5,
    barriers: bool = True,
    timeout: float = 60.0,
    failed_path: Path | None = None,
    summary_path: Path | None = None,
    progress_stream: TextIO | None = sys.stderr,
) -> IngestSummary:
    """Ingest one file; see the module docstring."""
    fmt = detect_format(path, fmt)
    failed_path = failed_path or path.with_name(path.name + ".failed.jsonl")
    summary_path = summary_path or path.with_name(path.name + ".summary.json")
    summary = IngestSummary(file=str(path), format=fmt, failed_file=str(failed_path))
    progress = Progress(os.path.getsize(path))
    failed_out = failed_path.open("w", encoding="utf-8")
    failed_written = 0

    def write_failed(entry: dict[str, Any]) -> None:
        nonlocal failed_written
        failed_written += 1
        failed_out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")

    def on_result(item: Outgoing, latency: float, value: bytes, duplicate: bool) -> None:
        status, code = result_status(value)
        summary.answered += 1
        summary.latency.add(latency)
        if duplicate:  # `value` is the original's result: nothing changed this time
            summary.statuses["Failed"] += 1
            summary.errors["DuplicateReferenceId"] += 1
            summary.duplicates_original[status] += 1
            return
        summary.statuses[status] += 1
        if code is not None:
            summary.errors[code] += 1
        if status != "Completed":
            write_failed({"line": item.line, "key": item.result_key, "status": status, "result": json.loads(value)})

    def on_lost(item: Outgoing, reason: str) -> None:
        summary.not_delivered += 1
        write_failed({"line": item.line, "key": item.result_key, "status": "NotDelivered", "reason": reason})

    ingestor = Ingestor(
        kafka=kafka,
        signing_key=signing_key,
        requests_topic=requests_topic,
        results_topic=results_topic,
        on_result=on_result,
        on_lost=on_lost,
        window=window,
        compression=compression,
        linger_ms=linger_ms,
    )
    summary.compression = ingestor.compression
    bar = _ProgressBar(progress_stream or sys.stderr, progress, summary, ingestor, enabled=progress_stream is not None)
    started = time.monotonic()
    try:
        async with ingestor:
            previous_type: str | None = None

            async def wait_all() -> None:
                for item in await ingestor.drain(idle_timeout=timeout):
                    summary.no_result += 1
                    write_failed({"line": item.line, "key": item.result_key, "status": "NoResult",
                                  "reason": f"no result within {timeout:g}s of the last one; re-run to find out (safe)"})

            with path.open("rb") as stream:
                for item in read_requests(stream, fmt=fmt, progress=progress):
                    summary.requests += 1
                    if isinstance(item, Rejected):
                        summary.invalid += 1
                        write_failed({"line": item.line, "status": "Invalid", "reason": item.reason, "request": item.text})
                        continue
                    if barriers and previous_type is not None and item.type != previous_type and ingestor.in_flight:
                        summary.barriers += 1
                        await wait_all()
                    previous_type = item.type
                    await ingestor.submit(item)
                    summary.sent += 1
                    if summary.sent % 256 == 0:
                        bar.show()
                        await asyncio.sleep(0)  # let results in while the window has room
            drain = asyncio.create_task(wait_all())
            while not drain.done():
                bar.show()
                await asyncio.wait({drain}, timeout=0.5)
            await drain
    finally:
        summary.elapsed_s = time.monotonic() - started
        failed_out.close()
        if not failed_written:
            failed_path.unlink(missing_ok=True)
            summary.failed_file = None
    bar.show(final=True)
    summary_path.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


# ----------------------------------------------------------------------------------- the command


def register(commands: Any) -> None:
    """Add the `ingest` subcommand to the CLI's subparsers."""
    p = commands.add_parser(
        "ingest",
        help="stream a JSONL or CSV file of requests through Kafka and wait for every result",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("jsonl", "csv"), help="default: from the file's extension")
    p.add_argument("--window", type=int, default=10_000, help="requests in flight at most (default 10000)")
    p.add_argument("--compression", default="lz4", help="lz4 (default), zstd, snappy, gzip or none")
    p.add_argument("--linger-ms", type=int, default=5, help="producer batching delay (default 5)")
    p.add_argument("--no-barriers", action="store_true", help="do not wait for results when the request type changes")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds without a result (default 60)")
    p.add_argument("--failed", type=Path, help="where to write failed requests (default FILE.failed.jsonl)")
    p.add_argument("--summary", type=Path, help="where to write the summary JSON (default FILE.summary.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from processor.settings import KafkaSettings, SettingsError, SigningSettings, load

    class IngestSettings(KafkaSettings, SigningSettings):
        requests_topic: str = "wallet.requests"
        results_topic: str = "wallet.results"

    try:
        settings = load(IngestSettings)
    except SettingsError as error:
        print(f'cloudwallet ingest: {error}\n(for the local stack: eval "$(python3 deploy/local/stack.py env --as client)" and CLOUDWALLET_SIGNING_KEY_FILE)', file=sys.stderr)
        return 2
    assert isinstance(settings, IngestSettings)
    if not args.file.is_file():
        print(f"cloudwallet ingest: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        fmt = detect_format(args.file, args.format)
        summary = asyncio.run(
            ingest_file(
                args.file,
                kafka=settings.kafka,
                signing_key=settings.client_signing_key,
                requests_topic=settings.requests_topic,
                results_topic=settings.results_topic,
                fmt=fmt,
                window=max(1, args.window),
                compression=args.compression,
                linger_ms=args.linger_ms,
                barriers=not args.no_barriers,
                timeout=args.timeout,
                failed_path=args.failed,
                summary_path=args.summary,
                progress_stream=None if args.quiet else sys.stderr,
            )
        )
    except (ValueError, RuntimeError) as error:
        print(f"cloudwallet ingest: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncloudwallet ingest: interrupted; re-running the same file is safe", file=sys.stderr)
        return 130
    print(summary.text())
    return summary.exit_code()
