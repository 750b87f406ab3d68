"""Repeated log lines are rate-limited per template, and the next line says how many were cut."""

from __future__ import annotations

import logging

from processor.logs import RepeatLimiter


def line(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("processor", logging.ERROR, __file__, 1, msg, args, None)


def test_a_repeated_template_passes_burst_times_per_window_then_reports_the_suppressed(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("processor.logs.time.monotonic", lambda: clock[0])
    limiter = RepeatLimiter(burst=3, window_s=60)
    passed = [limiter.filter(line("record %d failed", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.filter(line("another template")), "templates are limited apart"
    clock[0] += 61
    again = line("record %d failed", 11)
    assert limiter.filter(again)
    assert "7 similar lines suppressed" in again.getMessage()
