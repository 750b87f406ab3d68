"""The progress display off a terminal (logs, CI): a plain line, with the rate rich measures."""

from __future__ import annotations

import io
import time

from processor.ingest import progress
from processor.ingest.progress import RunProgress


def test_plain_lines_when_not_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    with RunProgress(label="ingest", stream=out) as bar:
        for step in range(4):
            bar.update(done=step * 100, share=step / 4, expected=400, counts=f"done {step * 100:,}")
            time.sleep(0.05)
        bar.update(done=400, share=1.0, expected=400, counts="done 400", final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\x1b" not in out.getvalue()
    assert lines[0].startswith("ingest   0.0%  done 0") and lines[-1].startswith("ingest 100.0%  done 400")
    assert "ETA 0:00:00" in lines[-1] and "elapsed 0:00:00" in lines[-1] and not lines[-1].split("  ")[2].startswith("0/s")


def test_disabled_writes_nothing() -> None:
    out = io.StringIO()
    with RunProgress(label="x", stream=out, enabled=False) as bar:
        bar.update(done=1, share=1.0, expected=1, counts="", final=True)
    assert out.getvalue() == ""
