"""Percentiles of a sample and their distribution-free confidence intervals (order statistics).

For the q-quantile of n independent draws, the number B of draws below it is Binomial(n, q):
the interval [x(l), x(u)] between the l-th and u-th order statistics covers it with probability
P(l <= B < u). `quantile_ci` picks the narrowest such ranks, about symmetric in probability,
with coverage at least `level`; with too few values for that (a p99 from fewer than ~370
values at 95 %), there is no interval and it says so.
"""

from __future__ import annotations

import math

import numpy as np


def quantile(sorted_values: np.ndarray, q: float) -> float:
    """The q-quantile as an order statistic (no interpolation: with +inf for failed requests,
    an interpolated value would be meaningless): the ceil(q n)-th smallest value."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    return float(sorted_values[max(0, min(n - 1, math.ceil(q * n) - 1))])


def quantile_ci_ranks(n: int, q: float, level: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the order statistics bounding the q-quantile with coverage
    P(l <= B < u) >= level, B ~ Binomial(n, q), each tail at most (1 - level) / 2; None when n
    is too small for such an interval."""
    from scipy.stats import binom

    if n <= 0:
        return None
    tail = (1.0 - level) / 2.0
    # l - 1: the largest k with P(B <= k) <= tail.
    k = int(binom.ppf(tail, n, q))
    if binom.cdf(k, n, q) > tail:
        k -= 1
    lower = k + 1
    # u: the smallest rank with P(B >= u) <= tail, i.e. P(B <= u - 1) >= 1 - tail.
    upper = int(binom.ppf(1.0 - tail, n, q)) + 1
    if lower < 1 or upper > n:
        return None
    return lower, upper


def quantile_ci(
    sorted_values: np.ndarray, q: float, level: float = 0.95
) -> tuple[float, float] | None:
    """A distribution-free `level` confidence interval of the q-quantile of `sorted_values`
    (ascending), None when there are too few values for one."""
    ranks = quantile_ci_ranks(len(sorted_values), q, level)
    if ranks is None:
        return None
    lower, upper = ranks
    return float(sorted_values[lower - 1]), float(sorted_values[upper - 1])
