"""`python -m fuzz` in miniature: ~3,000 hostile records, every category, against a real processor.

Every record is answered by a result or a dead letter naming it, no partition stalls, the
processor survives without a restart, and the ledger adds up. Seconds, not minutes: the full
100,000-record run is `make fuzz`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from processor.storage.audit import audit_ledger

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # fuzz/ is a top-level package like bench/, not an installed one
    sys.path.insert(0, str(ROOT))

from fuzz.child import Watched  # noqa: E402
from fuzz.cli import traced_env  # noqa: E402
from fuzz.otlp_sink import OtlpSink  # noqa: E402
from fuzz.records import CATEGORIES  # noqa: E402
from fuzz.report import render  # noqa: E402
from fuzz.run import FuzzOptions, run_fuzz  # noqa: E402

pytestmark = pytest.mark.e2e

OPTIONS = FuzzOptions(records=3000, seed=7, deadline=40.0, idle=20.0, progress=False)


async def test_every_hostile_record_is_accounted_for(topology, processors, db: sa.Engine) -> None:
    sink = OtlpSink()  # the processor traces, as in `make fuzz`, under the hostile stream
    started = processors("fuzz", extra_env=traced_env(sink) | {"OTEL_BSP_SCHEDULE_DELAY": "200"})
    # The fuzzer is the operator (it reads the DLQ and every reply topic); the processor is itself.
    found = await run_fuzz(settings=topology.settings(kafka=topology.kafka), options=OPTIONS, processor=Watched.of(started.process, started.log_path), signing_key=topology.signing_key)
    report = render(found)
    sent = {name for name, row in found["categories"].items() if row["sent"]}
    assert sent == set(CATEGORIES), f"categories never sent: {set(CATEGORIES) - sent}\n{report}"
    assert found["totals"]["unaccounted"] == 0, report
    assert found["stalls"] == 0, f"{found['probes']}\n{report}"
    assert started.alive and found["processor"]["alive"] and found["processor"]["starts"] == 1, report
    assert found["audit"]["ok"] and audit_ledger(db).ok, report
    assert found["ok"], report
    # Records whose traceparent was valid and sampled got spans; the malformed ones were only ignored.
    spans = sink.wait_for(lambda spans: any(span.name.startswith("process ") for span in spans))
    sink.stop()
    records = [span for span in spans if span.name.startswith("process ")]
    assert all(span.attributes.get("cloudwallet.status") in ("Completed", "Failed") or span.error for span in records), records[:3]
    assert sink.refused == 0
