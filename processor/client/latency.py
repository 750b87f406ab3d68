"""Latency percentiles: the one implementation behind ingest's summary and the benchmark's figures.

One rank rule for every figure (nearest rank: the q-quantile is the smallest sample with at
least q of all samples at or below it), two ways to keep the samples:

* exact (`LatencyHistogram(exact=True)`): every sample, 8 bytes each. The benchmark's p50 / p99
  / p99.9 are measured values, comparable from run to run to the microsecond.
* bucketed (the default): log-spaced buckets about 1 % wide, fixed memory for any count, for a
  bulk load of any size; a percentile is its bucket's upper edge, capped at the largest sample.

Why not the `hdrhistogram` package: it keeps values to a number of significant digits, so the
benchmark's exact percentiles would become approximations; and ingest's buckets are already as
small (a Counter of at most a few thousand buckets) as hdrhistogram's arrays.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

__all__ = ["LatencyHistogram", "nearest_rank"]


def nearest_rank(count: int, *, q: float) -> int:
    """The 1-based rank of the q-quantile (0..1) of `count` samples."""
    return min(count, max(1, math.ceil(q * count)))


class LatencyHistogram:
    """Latencies in seconds; percentiles by nearest rank (see the module docstring)."""

    RATIO = 1.01  # bucketed: each bucket's upper edge is 1 % above its lower
    MIN_S = 1e-5  # bucketed: everything below 10 µs shares the first bucket

    def __init__(self, *, exact: bool = False) -> None:
        self.exact = exact
        self._log_ratio = math.log(self.RATIO)
        self.buckets: Counter[int] = Counter()
        self._values = array("d")
        self._ordered: list[float] | None = None  # exact: the samples sorted, until the next add
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if self.exact:
            self._values.append(seconds)
            self._ordered = None
        else:
            self.buckets[int(math.log(max(seconds, self.MIN_S) / self.MIN_S) / self._log_ratio)] += 1

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0..1) in seconds; None without samples."""
        if not self.count:
            return None
        rank = nearest_rank(self.count, q=q)
        if self.exact:
            if self._ordered is None:
                self._ordered = sorted(self._values)
            return self._ordered[rank - 1]
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return min(self.MIN_S * self.RATIO ** (bucket + 1), self.max)
        return self.max

    def percentile_ms(self, q: float) -> float | None:
        """The q-quantile in milliseconds, rounded to 10 µs as every report shows it."""
        return _ms(self.percentile(q))

    def summary_ms(self) -> dict[str, float | None]:
        """p50, p90, p99, p99.9, max and mean in milliseconds (None without samples)."""
        return {
            "p50": self.percentile_ms(0.50),
            "p90": self.percentile_ms(0.90),
            "p99": self.percentile_ms(0.99),
            "p999": self.percentile_ms(0.999),
            "max": _ms(self.max if self.count else None),
            "mean": _ms(self.total / self.count if self.count else None),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
