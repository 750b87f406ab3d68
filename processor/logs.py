"""Logging set-up for the processes, with repeated lines rate-limited.

A hostile stream can make the same line repeat thousands of times a second (one per bad
record, one per retry of an outage); the log must stay readable and bounded. Lines are grouped
by logger, level and message template (not the formatted arguments): each group may log
`burst` lines per `window_s` seconds, the rest are counted and the next line that passes says
how many were suppressed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(slots=True)
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0


class RepeatLimiter(logging.Filter):
    def __init__(self, *, burst: int = 20, window_s: float = 60.0, max_groups: int = 10_000) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.max_groups = max_groups
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # A line that reaches several handlers is decided (and counted) once.
        decided = getattr(record, "repeat_limiter_passed", None)
        if decided is None:
            decided = record.repeat_limiter_passed = self._decide(record)  # type: ignore[attr-defined]
        return bool(decided)

    def _decide(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        group = (record.name, record.levelno, str(record.msg))
        window = self._windows.get(group)
        if window is None or now - window.started >= self.window_s:
            if len(self._windows) >= self.max_groups:
                self._windows.clear()  # bounded memory: start counting afresh
            suppressed = window.suppressed if window is not None else 0
            window = self._windows[group] = _Window(started=now)
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} similar lines suppressed in the last {self.window_s:.0f}s]"
        if window.passed >= self.burst:
            window.suppressed += 1
            return False
        window.passed += 1
        return True


LIMITER = RepeatLimiter()


def configure(*, level: int = logging.INFO) -> None:
    """Log to stderr; the Kafka client's chatter at WARNING."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    limit_repeats()


def limit_repeats() -> None:
    """Rate-limit repeated lines on every handler there is now (libraries such as FastStream
    add their own handlers when their objects are made: call again after making them)."""
    loggers = [logging.getLogger(), *(x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if LIMITER not in handler.filters:
                handler.addFilter(LIMITER)
