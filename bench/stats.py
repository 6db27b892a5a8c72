"""Pure helpers: percentiles, medians with their spread, ratios. No timing, no I/O (unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0-100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """A median over repeated runs, with the interquartile range and the extremes as its spread."""

    median: float
    p25: float
    p75: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(
            median=percentile(samples, 50),
            p25=percentile(samples, 25),
            p75=percentile(samples, 75),
            low=min(samples),
            high=max(samples),
            runs=len(samples),
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "p25": self.p25,
            "p75": self.p75,
            "min": self.low,
            "max": self.high,
            "runs": self.runs,
        }


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pairwise ratios of runs measured side by side (run i of each), so shared noise cancels."""
    if len(numerators) != len(denominators):
        raise ValueError("ratios need as many numerators as denominators")
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d > 0]
