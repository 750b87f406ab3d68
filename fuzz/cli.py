"""`python -m fuzz` (`make fuzz`): own topics and consumer group, a processor started as a child,
at least 100,000 hostile records, and a verdict. Exit code 0 only when every record was
accounted for, no partition stalled, the processor never restarted and the ledger audit is clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fuzz import topics
from fuzz.child import start_processor, stop_processor
from fuzz.otlp_sink import OtlpSink
from fuzz.records import CATEGORIES
from fuzz.report import render
from fuzz.run import FuzzOptions, run_fuzz, say
from fuzz.values import FRAGMENTS
from processor.processor_login import grant_topics
from processor.settings import ProcessorSettings
from processor.signing_keys import tool_signing_key
from processor.storage.migrate import upgrade_to_head
from processor.stream.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000, help="records to send (default 100000)")
    p.add_argument("--seed", type=int, default=1, help="seed of everything random: the same seed sends the same records (default 1)")
    p.add_argument("--valid-share", type=float, default=0.10, help="share of valid requests interleaved (default 0.10)")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds after sending to wait for every answer (default 600)")
    p.add_argument("--idle", type=float, default=60.0, help="stop waiting when nothing new was answered for this long (default 60; 0: never)")
    p.add_argument("--probe-timeout", type=float, default=10.0, help="seconds each partition's probe may take (default 10)")
    p.add_argument("--window", type=int, default=2000, help="records in flight while sending (default 2000)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of the requests topic (default 8)")
    p.add_argument("--only", default="", help=f"comma-separated categories to send (default all): {','.join(CATEGORIES)}")
    p.add_argument("--skip-values", default="", help="comma-separated hostile values (fuzz/values.py) mutations never use, to look past a known poison record")
    p.add_argument("--keep-topics", action="store_true", help="keep the run's topics afterwards")
    p.add_argument("--no-migrate", action="store_true", help="start the processor with --no-migrate")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), help="default: $KAFKA_BOOTSTRAP_SERVERS")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    p.add_argument("--output", type=Path, default=ROOT / "fuzz" / "results" / "latest.json", help="the JSON summary (default fuzz/results/latest.json)")
    p.add_argument("--log-dir", type=Path, default=ROOT / "fuzz" / "results" / "logs", help="where the processor's log goes")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if not args.bootstrap_servers or not args.database_url:
        p.error('needs --bootstrap-servers and --database-url (or eval "$(python3 deploy/local/stack.py env)")')
    args.categories = tuple(c.strip() for c in args.only.split(",") if c.strip()) or CATEGORIES
    if unknown := sorted(set(args.categories) - set(CATEGORIES)):
        p.error(f"--only: unknown categories {unknown}; choose from {','.join(CATEGORIES)}")
    args.skip_values = tuple(v.strip() for v in args.skip_values.split(",") if v.strip())
    if unknown := sorted(set(args.skip_values) - set(FRAGMENTS)):
        p.error(f"--skip-values: unknown values {unknown}; choose from {','.join(FRAGMENTS)}")
    if not 0.0 <= args.valid_share <= 1.0 or args.records < 1:
        p.error("--valid-share is between 0 and 1, --records at least 1")
    return args


def settings_for(args: argparse.Namespace, *, suffix: str) -> ProcessorSettings:
    """Topics and a consumer group of this run only, like tests/e2e/conftest.py's Topology."""
    return ProcessorSettings(
        database_url=args.database_url,
        bootstrap_servers=args.bootstrap_servers,
        requests_topic=f"fuzz.{suffix}.requests",
        results_topic=f"fuzz.{suffix}.results",
        dlq_topic=f"fuzz.{suffix}.dlq",
        consumer_group=f"fuzz.{suffix}.processor",
        requests_partitions=args.partitions,
        results_partitions=args.partitions,
    )


def options_for(args: argparse.Namespace) -> FuzzOptions:
    return FuzzOptions(
        records=args.records,
        seed=args.seed,
        valid_share=args.valid_share,
        deadline=args.deadline,
        idle=args.idle,
        window=args.window,
        probe_timeout=args.probe_timeout,
        categories=args.categories,
        skip_values=args.skip_values,
        keep_topics=args.keep_topics,
        progress=not args.quiet,
    )


def headline(found: dict[str, Any], *, output: Path) -> dict[str, Any]:
    """The JSON summary printed after the table (the file has everything)."""
    keys = ("ok", "failures", "totals", "stalls", "processor", "audit", "run")
    samples = {"unaccounted_sample": found["unaccounted_sample"][:5], "named_in_processor_log": found["named_in_processor_log"][:5]}
    return {key: found[key] for key in keys} | samples | {"output": str(output)}


def run_with_processor(*, args: argparse.Namespace, settings: ProcessorSettings, suffix: str, log_path: Path) -> dict[str, Any] | None:
    """Start the processor, run, stop it; None when the run itself could not go on."""
    if not args.no_migrate:  # as the operator (the owner): the processor's role may not
        upgrade_to_head(database_url=settings.database_url)
    # The processor traces (a tenth of its batches, every record with a sampled traceparent) to a
    # collector of the fuzzer's own: tracing runs under the hostile stream too.
    sink = OtlpSink()
    processor = start_processor(settings=settings, log_path=log_path, migrate=False, extra_env=traced_env(sink))
    try:
        signing_key = tool_signing_key(settings, database_url=settings.database_url, label="fuzz")
        found = asyncio.run(run_fuzz(settings=settings, options=options_for(args), processor=processor, signing_key=signing_key, suffix=suffix))
    except Exception as error:  # e.g. the set-up got no answer: say why, with the processor's view
        print(f"fuzz: the run failed: {type(error).__name__}: {error}\n--- processor log (last lines) ---\n" + "\n".join(processor.log().splitlines()[-30:]))
        return None
    finally:
        stop_processor(processor)  # its spans are exported as it stops
        sink.stop()
    found["traces"] = traces_summary(sink)
    return found


def traced_env(sink: OtlpSink) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def traces_summary(sink: OtlpSink) -> dict[str, int]:
    """What the processor exported: batch spans, and spans of records that carried a trace."""
    spans = sink.spans()
    return {
        "spans": len(spans),
        "batch_spans": sum(span.name.startswith("batch ") for span in spans),
        "record_spans": sum(span.name.startswith("process ") for span in spans),
        "record_spans_failed": sum(span.name.startswith("process ") and span.attributes.get("cloudwallet.status") == "Failed" for span in spans),
        "exports_refused": sink.refused,
    }


def _shown(path: Path) -> str:
    """A path as the committed report may name it: relative to the clone, never the machine's."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suffix = uuid.uuid4().hex[:8]
    settings = settings_for(args, suffix=suffix)
    log_path = args.log_dir / f"processor-{suffix}.log"
    asyncio.run(ensure_topics(settings=settings))
    asyncio.run(grant_topics(operator=settings.kafka, settings=settings))
    try:
        say(f"fuzz: starting the processor (log {log_path})", enabled=not args.quiet)
        found = run_with_processor(args=args, settings=settings, suffix=suffix, log_path=log_path)
    finally:
        if not args.keep_topics:
            names = [settings.requests_topic, settings.results_topic, settings.dlq_topic]
            asyncio.run(topics.delete_topics(kafka=settings.kafka, names=names))
    if found is None:
        return 1
    found["run"] |= {"requests_topic": settings.requests_topic, "consumer_group": settings.consumer_group, "processor_log": _shown(log_path)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(found, indent=2, default=str) + "\n")
    print(render(found))
    print(json.dumps(headline(found, output=args.output), indent=2, default=str))
    return 0 if found["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
