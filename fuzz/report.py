"""What a run proved, as a dict (written as JSON) and as a table: accounting per category and
per partition, the stall probes, the processor's life, the ledger audit, and the verdict."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from fuzz.accounting import DEAD_LETTER, REPEATED, RESULT, Answers
from fuzz.probes import ProbeOutcome
from fuzz.records import CATEGORIES
from fuzz.sending import SentLog

COLUMNS = ("sent", "refused", "results", "dead_lettered", "unaccounted", "repeated")
SAMPLE = 20
# Categories whose record value is broken on purpose: one of them applied (Completed) is worth a look
# (a mutation that happened to stay valid, or a parser more lenient than the contract).
BROKEN_VALUES = frozenset({"random_bytes", "truncated", "mutated_field", "wrong_top_level", "duplicate_keys", "near_limit"})


def accounting(log: SentLog, *, answers: Answers) -> dict[str, Any]:
    """Per category and per partition: sent, answered how, unaccounted (with samples)."""
    categories: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    partitions: dict[int, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    applied: Counter[str] = Counter()
    for partition, offset, category, detail in log.rows():
        state = answers.state(partition, offset)
        counts = categories[category]
        counts["sent"] += 1
        counts["results"] += bool(state & RESULT)
        counts["dead_lettered"] += bool(state & DEAD_LETTER)
        counts["repeated"] += bool(state & REPEATED)
        view = partitions.setdefault(partition, {"sent": 0, "unaccounted": 0, "first_unaccounted": None})
        view["sent"] += 1
        if state:
            outcome = answers.outcome_of(partition, offset)
            outcomes[category][outcome] += 1
            if category in BROKEN_VALUES and outcome.startswith("Completed"):
                applied[f"{category}:{detail}"] += 1
            continue
        counts["unaccounted"] += 1
        view["unaccounted"] += 1
        where = {"partition": partition, "offset": offset, "category": category, "detail": detail}
        if view["first_unaccounted"] is None or offset < view["first_unaccounted"]["offset"]:
            view["first_unaccounted"] = where
        if counts["unaccounted"] <= 3 and len(samples) < 2 * SAMPLE:  # a few of every category
            samples.append(where)
    for category, refused in log.refused.items():
        categories[category]["refused"] += refused
    order = [name for name in CATEGORIES if name in categories]
    table = {name: {column: categories[name][column] for column in COLUMNS} | {"outcomes": dict(outcomes[name].most_common(8))} for name in order}
    return {
        "categories": table,
        "partitions": dict(sorted(partitions.items())),
        "unaccounted_sample": samples,
        "broken_values_applied": dict(applied.most_common(30)),
    }


def named_in_log(log: SentLog, *, text: str, topic: str) -> list[dict[str, Any]]:
    """Records the processor's log names (as `topic[partition]@offset`, best effort) with their
    category and detail: when a partition stalls, usually the record that stalled it."""
    mentions = Counter((int(p), int(o)) for p, o in re.findall(re.escape(topic) + r"\[(\d+)\]@(\d+)", text))
    named = [
        {"partition": p, "offset": o, "category": category, "detail": detail, "mentions": mentions[(p, o)]}
        for p, o, category, detail in log.rows()
        if (p, o) in mentions
    ]
    return sorted(named, key=lambda row: -row["mentions"])[:SAMPLE]


def totals(categories: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {column: sum(row[column] for row in categories.values()) for column in COLUMNS}


def failures(*, found: dict[str, Any]) -> list[str]:
    """Why the run fails; empty when everything it set out to prove holds."""
    failed = []
    if found["totals"]["sent"] == 0:
        failed.append("no record was sent")
    if found["answers"]["read_error"]:
        failed.append(found["answers"]["read_error"])
    if found["totals"]["unaccounted"]:
        failed.append(f"{found['totals']['unaccounted']} records unaccounted for (no result or dead letter names them)")
    if found["stalls"]:
        failed.append(f"{found['stalls']} partitions stalled (their probe got no answer within {found['probe_timeout_s']}s)")
    processor = found["processor"]
    if not processor["alive"]:
        failed.append(f"the processor (pid {processor['pid']}) is not running any more")
    if processor["starts"] != 1:
        failed.append(f"the processor's log shows {processor['starts']} starts, not 1")
    if not found["audit"]["ok"]:
        failed.append(f"the ledger audit found problems: {found['audit']['problems']}")
    return failed


def probe_view(outcomes: list[ProbeOutcome]) -> list[dict[str, Any]]:
    return [{"partition": o.partition, "offset": o.offset, "answered": o.answered, "seconds": o.seconds} for o in outcomes]


def render(found: dict[str, Any]) -> str:
    """The table, then one line per proof, then the verdict."""
    header = f"{'category':<20}{'sent':>8}{'refused':>9}{'results':>9}{'dead-lettered':>15}{'unaccounted':>13}{'repeated':>10}  top outcome"
    lines = [header, "-" * (len(header) + 24)]
    rows = {**found["categories"], "TOTAL": found["totals"] | {"outcomes": {}}}
    for name, row in rows.items():
        top = next(iter(row["outcomes"].items()), None)
        lines.append(
            f"{name:<20}{row['sent']:>8,}{row['refused']:>9,}{row['results']:>9,}{row['dead_lettered']:>15,}{row['unaccounted']:>13,}{row['repeated']:>10,}  "
            + (f"{top[0]} ({top[1]:,})" if top else "")
        )
    lines += ["", *_proof_lines(found)]
    return "\n".join(lines)


def _proof_lines(found: dict[str, Any]) -> list[str]:
    run, processor, audit = found["run"], found["processor"], found["audit"]
    answered = [p["seconds"] for p in found["probes"] if p["answered"]]
    lines = [
        f"sent {found['totals']['sent']:,} records ({run['send_mb']:,.1f} MB) in {run['send_s']:.1f}s ({run['send_per_s']:,.0f}/s); "
        f"accounting waited {run['wait_s']:.1f}s ({run['accounted_per_s']:,.0f} answered/s)",
        f"unaccounted: {found['totals']['unaccounted']:,}" + (f"  e.g. {found['unaccounted_sample'][:3]}" if found["unaccounted_sample"] else ""),
        f"stalls: {found['stalls']} of {len(found['probes'])} partitions" + (f" (probes answered in at most {max(answered):.2f}s)" if answered else ""),
        f"processor: pid {processor['pid']} {'alive' if processor['alive'] else 'NOT RUNNING'}, {processor['starts']} start(s), {processor['error_lines']} error lines in its log",
        f"ledger audit: {'clean' if audit['ok'] else 'PROBLEMS ' + str(audit['problems'])}",
    ]
    if named := found["named_in_processor_log"]:
        lines.append(f"records the processor's log names ({len(named)}), e.g.: " + "; ".join(f"[{r['partition']}]@{r['offset']} {r['category']} {r['detail']}" for r in named[:3]))
    if traces := found.get("traces"):
        lines.append(f"traces exported: {traces['batch_spans']:,} batch spans (a tenth sampled), {traces['record_spans']:,} spans of records that carried a sampled traceparent")
    if valid := found["categories"].get("valid"):  # not a proof, a sign: hostile neighbours cost valid requests nothing
        lines.append(f"valid transfers completed: {valid['outcomes'].get('Completed', 0):,} of {valid['sent']:,}")
    verdict = "PASS" if found["ok"] else "FAIL: " + "; ".join(found["failures"])
    return [*lines, f"verdict: {verdict}"]
