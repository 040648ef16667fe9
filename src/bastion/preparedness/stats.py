"""Interval estimates and tests used by the gate: Wilson score interval (shared with bastion.redteam.stats)
and a one-sided two-proportion z-test."""

from __future__ import annotations

import math
from statistics import NormalDist


def z_for(confidence: float) -> float:
    """Two-sided normal quantile for a confidence level (0.95 -> 1.96)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval at a confidence level: the red-team statistics' interval, so the scorecard and
    `bastion redteam` report the same numbers. With n == 0 nothing is known: (0, 1)."""
    from bastion.redteam.stats import wilson as _wilson

    return _wilson(successes, n, z_for(confidence))


def two_proportion_p(k_new: int, n_new: int, k_old: int, n_old: int) -> float:
    """One-sided p-value that the new proportion is greater than the old one (pooled z-test).

    Returns 1.0 when either sample is empty or nothing differs."""
    if n_new <= 0 or n_old <= 0:
        return 1.0
    p_new, p_old = k_new / n_new, k_old / n_old
    pooled = (k_new + k_old) / (n_new + n_old)
    var = pooled * (1 - pooled) * (1 / n_new + 1 / n_old)
    if var <= 0:
        return 1.0
    z = (p_new - p_old) / math.sqrt(var)
    return 1.0 - NormalDist().cdf(z)


__all__ = ["wilson", "two_proportion_p", "z_for"]
