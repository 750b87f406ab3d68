"""Progress of a long run on stderr: ingest's bar, and the benchmark's phases.

A terminal gets a rich progress bar redrawn in place; anything else (a log file, CI) gets a
plain line every few seconds, since a redrawn bar there is either nothing or a screenful of
control characters. Both show the same figures, and rich measures the rate (over the last
10 s) for both: a user wants to know how fast it goes now, not on average since the start.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressBar, Task, TextColumn, TimeElapsedColumn

from processor.ingest.pipeline import Ingestor
from processor.ingest.reading import ReadProgress
from processor.ingest.summary import IngestSummary

__all__ = ["IngestProgress", "RunProgress"]

RATE_WINDOW_S = 10.0
TTY_EVERY_S = 0.5
PLAIN_EVERY_S = 5.0


class _ShareBar(BarColumn):
    """A bar of the task's `share` field: the task itself counts results (for their rate),
    while the bar shows what the caller says is done (e.g. the share of the file read)."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        bar.total, bar.completed = 1.0, min(max(task.fields.get("share", 0.0), 0.0), 1.0)
        return bar


class RunProgress:
    """One progress display: `update` it as often as you like, it redraws at most every half
    second on a terminal and writes a line every 5 s elsewhere. Use it as a context manager."""

    def __init__(self, *, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._console = Console(file=stream or sys.stderr, highlight=False)
        self._live = enabled and self._console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            _ShareBar(bar_width=24),
            TextColumn("{task.fields[share]:>6.1%}  {task.fields[counts]}  {task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=self._console,
            auto_refresh=False,
            speed_estimate_period=RATE_WINDOW_S,
            disable=not self._live,
        )
        # Never a total: rich would reset the rate on every change of it.
        self._task = self._progress.add_task(label, total=None, share=0.0, counts="", rate="", eta="--:--")
        self._started = time.monotonic()
        self._shown = float("-inf")

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def update(self, *, done: int, share: float, expected: float | None, counts: str, final: bool = False) -> None:
        """`done` results of `expected` (None: not known yet); `share` (0..1) fills the bar."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._shown < (TTY_EVERY_S if self._live else PLAIN_EVERY_S):
            return
        self._shown = now
        self._progress.update(self._task, completed=done)
        speed = self._progress.tasks[0].speed or 0.0
        eta = "--:--"
        if expected is not None and speed > 0:
            eta = _clock(max(0.0, expected - done) / speed)
        self._progress.update(self._task, share=share, counts=counts, rate=f"{speed:,.0f}/s", eta=eta)
        if self._live:
            self._progress.refresh()
        else:
            self._console.file.write(
                f"{self.label} {share:6.1%}  {counts}  {speed:,.0f}/s  elapsed {_clock(now - self._started)}  ETA {eta}\n"
            )
            self._console.file.flush()


class IngestProgress:
    """Ingest's display: the share of the file read, sent / done / in flight, the rate and an
    ETA from the requests the file is expected to hold at the share read so far."""

    def __init__(self, *, read: ReadProgress, summary: IngestSummary, ingestor: Ingestor, stream: TextIO | None) -> None:
        self.read = read
        self.summary = summary
        self.ingestor = ingestor
        self.display = RunProgress(label="ingest", stream=stream, enabled=stream is not None)

    def __enter__(self) -> IngestProgress:
        self.display.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self.display.__exit__()

    def show(self, *, final: bool = False) -> None:
        share = self.read.share
        done = self.ingestor.answered + self.summary.invalid
        self.display.update(
            done=done,
            share=share,
            expected=self.summary.requests / share if share > 0 else None,
            counts=f"sent {self.ingestor.sent:,}  done {done:,}  in flight {self.ingestor.in_flight:,}",
            final=final,
        )


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))
