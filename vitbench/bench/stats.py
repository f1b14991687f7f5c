"""Summary statistics of timing samples (milliseconds), and the geometric mean of speedups."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# A row whose interquartile range exceeds this fraction of its median is flagged as noisy.
NOISE_WARN = 0.10


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default "linear" method) of sorted data."""
    if not sorted_xs:
        raise ValueError("quantile of an empty sample")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], got {q}")
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


@dataclass(frozen=True)
class Stats:
    """Summary of n timing samples, all in milliseconds; noise = IQR / median."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float  # sample standard deviation (n - 1); 0 for n == 1
    n: int
    noise: float

    @property
    def noisy(self) -> bool:
        return self.noise > NOISE_WARN


def summarize(samples_ms: Iterable[float]) -> Stats:
    """Median, p10, p90, mean, std and noise (IQR/median) of timing samples."""
    xs = sorted(float(x) for x in samples_ms)
    n = len(xs)
    if n == 0:
        raise ValueError("no timing samples to summarize")
    if any(not math.isfinite(x) or x < 0 for x in xs):
        raise ValueError("timing samples must be finite and non-negative")
    median = quantile(xs, 0.5)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    iqr = quantile(xs, 0.75) - quantile(xs, 0.25)
    noise = iqr / median if median > 0 else 0.0
    return Stats(median, quantile(xs, 0.10), quantile(xs, 0.90), mean, std, n, noise)


def geomean(xs: Iterable[float]) -> float | None:
    """Geometric mean (the right average of speedup ratios); None for no values."""
    vals = [float(x) for x in xs]
    if not vals:
        return None
    if any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise ValueError("geometric mean needs positive finite values")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
