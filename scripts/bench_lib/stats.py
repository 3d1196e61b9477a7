"""Percentiles and small helpers shared by the load generators and the report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    s = sorted(values)

    def at(p: float) -> float:
        return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]

    return {"n": len(s), "p50": at(50), "p90": at(90), "p99": at(99), "max": s[-1],
            "mean": statistics.fmean(s)}


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


class Histogram:
    """Fixed-width buckets (``width`` ms) up to ``limit`` ms; cheap to add to from a hot loop."""

    def __init__(self, width: float = 0.25, limit: float = 60_000.0) -> None:
        self.width = width
        self.n = int(limit / width) + 1
        self.counts = [0] * self.n
        self.total = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        i = int(ms / self.width)
        if i >= self.n:
            i = self.n - 1
        self.counts[i] += 1
        self.total += 1
        if ms > self.max:
            self.max = ms

    def percentile(self, p: float) -> float | None:
        if not self.total:
            return None
        rank = max(1, math.ceil(p / 100 * self.total))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return (i + 1) * self.width  # upper edge of the bucket: never under-reports
        return self.max
