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
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from processor.client.connection import KafkaConnection
from processor.ingest.pipeline import Ingestor
from processor.ingest.progress import IngestProgress
from processor.ingest.reading import Outgoing, ReadProgress, RejectedLine, detect_format, read_requests
from processor.ingest.summary import FailedRequests, IngestSummary
from processor.settings import KafkaSettings, SigningSettings, load_or_exit
from schemas.signing import SigningKey

__all__ = ["IngestSettings", "ingest_file", "register", "run_command"]

LOCAL_STACK_HINT = 'for the local stack: eval "$(python3 deploy/local/stack.py env --as client)" and CLOUDWALLET_SIGNING_KEY_FILE'


class IngestSettings(KafkaSettings, SigningSettings):
    """What ingest reads from the environment: the Kafka login, the client's signing key and
    the topics; everything about one run is a command-line flag."""

    requests_topic: str = "wallet.requests"
    results_topic: str = "wallet.results"


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
    """`cloudwallet ingest`: the exit status of the run (see the module docstring), 2 for bad usage."""
    settings = load_or_exit(IngestSettings, program="cloudwallet ingest", hint=LOCAL_STACK_HINT)
    if not args.file.is_file():
        print(f"cloudwallet ingest: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(
            ingest_file(
                args.file,
                kafka=settings.kafka,
                signing_key=settings.client_signing_key,
                requests_topic=settings.requests_topic,
                results_topic=settings.results_topic,
                fmt=detect_format(args.file, given=args.format),
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
    """Ingest one file (see the module docstring); the summary is also written to `summary_path`
    (default FILE.summary.json), the failures to `failed_path` (default FILE.failed.jsonl)."""
    fmt = detect_format(path, given=fmt)
    failed_path = failed_path or path.with_name(path.name + ".failed.jsonl")
    summary_path = summary_path or path.with_name(path.name + ".summary.json")
    summary = IngestSummary(file=str(path), format=fmt, failed_file=str(failed_path))
    read = ReadProgress(total=os.path.getsize(path))
    failures = FailedRequests(path=failed_path, summary=summary)
    started = time.monotonic()
    try:
        ingestor = Ingestor(
            kafka=kafka,
            signing_key=signing_key,
            requests_topic=requests_topic,
            results_topic=results_topic,
            on_result=failures.result,
            on_lost=failures.lost,
            window=window,
            compression=compression,
            linger_ms=linger_ms,
        )
        summary.compression = ingestor.compression
        with IngestProgress(read=read, summary=summary, ingestor=ingestor, stream=progress_stream) as bar:
            async with ingestor:
                with path.open("rb") as stream:
                    requests = read_requests(stream, fmt=fmt, progress=read)
                    await _publish(requests, ingestor=ingestor, failures=failures, bar=bar, barriers=barriers, timeout=timeout)
                await _wait_all(ingestor=ingestor, failures=failures, timeout=timeout, tick=bar.show)
            bar.show(final=True)
    finally:
        summary.elapsed_s = time.monotonic() - started
        failures.close()
    summary_path.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


async def _publish(
    requests: Iterable[Outgoing | RejectedLine],
    *,
    ingestor: Ingestor,
    failures: FailedRequests,
    bar: IngestProgress,
    barriers: bool,
    timeout: float,
) -> None:
    """Send each valid request in file order; with `barriers`, wait for every result in flight
    whenever the request type changes, so that what a later type needs exists by then."""
    summary = failures.summary
    previous_type: str | None = None
    for item in requests:
        summary.requests += 1
        if isinstance(item, RejectedLine):
            failures.invalid(item)
            continue
        if barriers and previous_type is not None and item.type != previous_type and ingestor.in_flight:
            summary.barriers += 1
            await _wait_all(ingestor=ingestor, failures=failures, timeout=timeout, tick=bar.show)
        previous_type = item.type
        await ingestor.submit(item)
        summary.sent += 1
        if summary.sent % 256 == 0:
            bar.show()
            await asyncio.sleep(0)  # let results in while the window has room


async def _wait_all(*, ingestor: Ingestor, failures: FailedRequests, timeout: float, tick: Callable[[], None]) -> None:
    """Every result in flight, or `timeout` s without one: what never came is a NoResult."""
    for item in await ingestor.drain(idle_timeout=timeout, tick=tick):
        failures.unanswered(item, timeout=timeout)
