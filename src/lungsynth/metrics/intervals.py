"""Confidence intervals: Student-t for means, Wilson for proportions.

Each returns plain floats (scipy is imported on first use: the workflow imports the study design,
which uses these, while it builds the DAG); ``confidence`` is the two-sided coverage (0.95 = 95%).
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval: mean +/- t(1-a/2, k-1) * s / sqrt(k), s with ddof=1.

    Returns ``(mean, low, high)``; the interval is ``(mean, mean)`` for k = 1.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float).ravel()
    k = len(values)
    if k == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if k == 1:
        return (mean, mean, mean)
    half = stats.t.ppf(0.5 + confidence / 2, k - 1) * values.std(ddof=1) / math.sqrt(k)
    return (mean, float(mean - half), float(mean + half))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion ``successes / n`` with its Wilson score interval: ``(p, low, high)``."""
    from scipy import stats

    if n == 0:
        return (math.nan, math.nan, math.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (p, max(0.0, centre - half), min(1.0, centre + half))


def proportion_t_bounds(mean: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    """``(low, high)`` = mean -/+ t(0.5 + confidence / 2, df) se, clipped to [0, 1] (for metrics that are proportions).

    NaN bounds when ``se`` is not finite or ``df <= 0``; ``(mean, mean)`` when ``se`` is 0.
    """
    from scipy import stats

    if not np.isfinite(se) or df <= 0:
        return float("nan"), float("nan")
    if se == 0:
        return mean, mean
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return max(mean - half, 0.0), min(mean + half, 1.0)
