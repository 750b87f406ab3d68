"""The one latency-percentile implementation (processor.client.latency) behind ingest's summary
and the benchmark: exact figures are measured values by nearest rank; the fixed-memory buckets
stay within their 1 % of them."""

from __future__ import annotations

import math
import random

from processor.client.latency import LatencyHistogram, nearest_rank


def by_sorting(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def test_exact_percentiles_are_the_nearest_rank_samples() -> None:
    rng = random.Random(5)
    for count in (1, 2, 5, 1000, 5000, 12_345):
        values = [rng.lognormvariate(-3, 1) for _ in range(count)]
        histogram = LatencyHistogram(exact=True)
        for value in values:
            histogram.add(value)
        for q in (0.5, 0.9, 0.99, 0.999, 1.0):
            assert histogram.percentile(q) == by_sorting(values, q), (count, q)
        assert histogram.percentile_ms(0.5) == round(by_sorting(values, 0.5) * 1000, 2)


def test_buckets_stay_within_one_percent_with_fixed_memory() -> None:
    rng = random.Random(6)
    values = [rng.lognormvariate(-3, 1.5) for _ in range(50_000)]
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    assert len(histogram.buckets) < 2000
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = by_sorting(values, q)
        assert exact <= histogram.percentile(q) <= exact * 1.0101, q
    summary = histogram.summary_ms()
    assert summary["max"] == round(max(values) * 1000, 2) and summary["p999"] <= summary["max"]


def test_no_samples_no_figures() -> None:
    assert LatencyHistogram().summary_ms() == {"p50": None, "p90": None, "p99": None, "p999": None, "max": None, "mean": None}
    assert LatencyHistogram(exact=True).percentile(0.5) is None


def test_nearest_rank() -> None:
    assert nearest_rank(5000, q=0.999) == 4995 and nearest_rank(1, q=0.5) == 1 and nearest_rank(10, q=0.0) == 1
