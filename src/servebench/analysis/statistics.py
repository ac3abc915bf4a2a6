"""Pure statistics of the study (no I/O): metrics, bootstrap intervals, tests, Holm, verdicts.

The repetition is the statistical unit: requests within one run share the server's state (a
queue, a batch, a GC pause), so they are not independent. Every per-variant number is the mean
over valid repetitions of a per-run value (the run's p99, its throughput, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A per-run number: its column in runs.csv, unit, and which direction is better."""

    name: str
    label: str
    unit: str
    better: str  # "lower" or "higher"
    latency_kind: str | None = None  # "latency" (from schedule) / "service" (from send)


LATENCY_METRICS = [
    Metric(f"{kind}_p{q}_ms", f"{word} p{q}", "ms", "lower", kind)
    for kind, word in (("latency", "latency"), ("service", "service time"))
    for q in (50, 90, 95, 99)
]


METRICS: list[Metric] = [
    *LATENCY_METRICS,
    Metric("throughput_rps", "throughput", "req/s", "higher"),
    Metric("error_rate", "error rate", "fraction", "lower"),
    Metric("rejection_rate", "rejection rate", "fraction", "lower"),
]


METRIC_BY_NAME = {metric.name: metric for metric in METRICS}


# Cliff's delta magnitude thresholds (Romano et al. 2006).
CLIFF_THRESHOLDS = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"))


def bootstrap_distribution(
    groups: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int,
    rng: np.random.Generator,
    paired: bool = False,
) -> np.ndarray:
    """`statistic(*resampled_groups)` for `n_resamples` bootstrap resamples.

    Each group is resampled with replacement (its own size); with `paired`, the groups have
    equal length and share the resampled indices (unit i of every group moves together).
    `statistic` gets arrays of shape (n_resamples, n_group) and reduces along axis 1.
    """
    arrays = [np.asarray(group, dtype=float) for group in groups]
    if paired:
        n = len(arrays[0])
        if any(len(array) != n for array in arrays):
            raise ValueError("paired resampling needs groups of equal length")
        index = rng.integers(0, n, size=(n_resamples, n))
        resampled = [array[index] for array in arrays]
    else:
        resampled = [
            array[rng.integers(0, len(array), size=(n_resamples, len(array)))] for array in arrays
        ]
    return np.asarray(statistic(*resampled), dtype=float)


def percentile_interval(distribution: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` interval of a bootstrap distribution (NaN draws ignored)."""
    finite = distribution[np.isfinite(distribution)]
    if len(finite) == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., np.ndarray] = np.mean,
    *,
    level: float = 0.95,
    n_resamples: int = 10000,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic(values)`; (nan, nan) with fewer than 2 values.

    `statistic` must take an `axis` keyword (np.mean, np.median, or e.g.
    `lambda x, axis: np.percentile(x, 99, axis=axis)`).
    """
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if len(array) < 2:
        return math.nan, math.nan
    rng = rng if rng is not None else np.random.default_rng(0)
    distribution = bootstrap_distribution(
        [array], lambda x: statistic(x, axis=1), n_resamples=n_resamples, rng=rng
    )
    return percentile_interval(distribution, level)


def _ratio_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / denominator, np.nan)


def two_sample_bootstrap(
    variant: np.ndarray,
    reference: np.ndarray,
    *,
    level: float,
    n_resamples: int,
    rng: np.random.Generator,
    paired: bool,
) -> dict[str, float]:
    """CIs of the difference and the ratio of means (variant vs reference) over repetitions."""
    if len(variant) < 2 or len(reference) < 2:
        return dict.fromkeys(
            ("difference_ci_low", "difference_ci_high", "ratio_ci_low", "ratio_ci_high"),
            math.nan,
        )
    means = bootstrap_distribution(
        [variant, reference],
        lambda v, r: np.stack([v.mean(axis=1), r.mean(axis=1)]),
        n_resamples=n_resamples,
        rng=rng,
        paired=paired,
    )
    difference = percentile_interval(means[0] - means[1], level)
    ratio = percentile_interval(_ratio_or_nan(means[0], means[1]), level)
    return {
        "difference_ci_low": difference[0],
        "difference_ci_high": difference[1],
        "ratio_ci_low": ratio[0],
        "ratio_ci_high": ratio[1],
    }


@dataclass(frozen=True)
class MannWhitney:
    u: float  # U of the first sample: #(x > y) + 0.5 #(x == y)
    p_value: float  # two-sided, normal approximation with tie and continuity correction
    cliffs_delta: float  # P(x > y) - P(x < y), in [-1, 1]
    n_x: int
    n_y: int


def mann_whitney(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> MannWhitney:
    """Mann-Whitney U test of x against y (two-sided) and Cliff's delta, in O(n log n).

    The p-value is the normal approximation with tie correction and continuity correction
    (scipy's `mannwhitneyu(..., method="asymptotic")`), accurate for the thousands of requests
    of a run. Identical samples give U = n m / 2, p = 1, delta = 0.
    """
    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    n_x, n_y = len(x), len(y)
    if n_x == 0 or n_y == 0:
        return MannWhitney(math.nan, math.nan, math.nan, n_x, n_y)
    combined = np.concatenate([x, y])
    ranks = stats.rankdata(combined)
    u = float(ranks[:n_x].sum() - n_x * (n_x + 1) / 2.0)
    n = n_x + n_y
    _, tie_counts = np.unique(combined, return_counts=True)
    tie_term = float((tie_counts**3 - tie_counts).sum())
    variance = n_x * n_y / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    mean_u = n_x * n_y / 2.0
    if variance <= 0:
        p_value = 1.0
    else:
        z = (abs(u - mean_u) - 0.5) / math.sqrt(variance)
        p_value = float(min(1.0, 2.0 * stats.norm.sf(max(z, 0.0))))
    delta = 2.0 * u / (n_x * n_y) - 1.0
    return MannWhitney(u, p_value, float(delta), n_x, n_y)


def cliffs_delta(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """P(x > y) - P(x < y) over all pairs (ties count for neither)."""
    return mann_whitney(x, y).cliffs_delta


def cliffs_magnitude(delta: float) -> str:
    """negligible / small / medium / large (Romano et al. 2006 thresholds on |delta|)."""
    if not math.isfinite(delta):
        return ""
    for threshold, name in CLIFF_THRESHOLDS:
        if abs(delta) < threshold:
            return name
    return "large"


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    m = len(present)
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def repetition_test(variant: np.ndarray, reference: np.ndarray) -> tuple[float, str]:
    """Two-sided Welch t-test of per-repetition values: (p-value, method).

    On the logarithm when every value is positive (latencies and rates scale, and the ratio is
    what the comparison reports), on the values otherwise. NaN with fewer than 2 repetitions
    in a group. Without variance in either group the test is exact: p = 1 for equal means and
    p = 0 for different ones.
    """
    from scipy import stats

    v = np.asarray(variant, dtype=float)
    r = np.asarray(reference, dtype=float)
    v, r = v[np.isfinite(v)], r[np.isfinite(r)]
    if len(v) < 2 or len(r) < 2:
        return math.nan, "needs 2+ repetitions per variant"
    use_log = bool((v > 0).all() and (r > 0).all())
    if use_log:
        v, r = np.log(v), np.log(r)
    method = "Welch t-test on log values" if use_log else "Welch t-test"
    if np.ptp(v) == 0 and np.ptp(r) == 0:
        return (1.0 if v[0] == r[0] else 0.0), method + " (no variance: exact)"
    with warnings.catch_warnings():
        # nearly equal values (e.g. rates of 0 and 0.001) only cost precision, not validity
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(v, r, equal_var=False)
    return float(result.pvalue), method


def mean_or_nan(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=float)
    array = array[np.isfinite(array)]
    return float(array.mean()) if len(array) else math.nan


def _format_value(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "fraction":
        return f"{100 * value:.3g}%"
    return f"{value:.3g} {unit}"


def _direction_words(metric: Metric, variant_larger: bool) -> str:
    if metric.latency_kind is not None:
        return "slower" if variant_larger else "faster"
    if metric.name == "throughput_rps":
        return "higher throughput" if variant_larger else "lower throughput"
    noun = "errors" if metric.name == "error_rate" else "rejections"
    return f"more {noun}" if variant_larger else f"fewer {noun}"


def verdict(
    metric: Metric,
    variant: str,
    reference: str,
    row: dict[str, Any],
    *,
    alpha: float,
    ci_level: float,
) -> tuple[str, str]:
    """(class, sentence) of one comparison row.

    Class: `better` / `worse` when the Holm-corrected repetition-level p-value is below
    `alpha`, `no difference` when it is not, `not tested` without 2+ valid repetitions per
    variant (the sentence then gives the point estimates and the request-level effect size).
    """
    v, r = row["variant_mean"], row["reference_mean"]
    values = (
        f"{metric.label} {_format_value(v, metric.unit)} vs "
        f"{_format_value(r, metric.unit)} for {reference}"
    )
    ratio = row["ratio"]
    ratio_text = ""
    if math.isfinite(ratio):
        ratio_text = f", {ratio:.3g}x"
        if math.isfinite(row["ratio_ci_low"]):
            ratio_text += (
                f" ({100 * ci_level:.0f}% CI {row['ratio_ci_low']:.3g}-{row['ratio_ci_high']:.3g}x)"
            )
    p = row["rep_p_holm"]
    if not math.isfinite(p):
        effect = ""
        if math.isfinite(row.get("cliffs_delta", math.nan)):
            effect = (
                f"; per request, Cliff's delta {row['cliffs_delta']:+.2f} "
                f"({row['cliffs_magnitude']})"
            )
        n = min(row["n_reps_variant"], row["n_reps_reference"])
        return (
            "not tested",
            f"not tested ({n} valid repetition(s); 2+ per variant needed): {variant} "
            f"{values}{ratio_text}{effect}",
        )
    if p < alpha:
        larger = v > r
        good = larger == (metric.better == "higher")
        words = _direction_words(metric, larger)
        return (
            "better" if good else "worse",
            f"{variant} {words}: {values}{ratio_text}; Holm p={p:.2g}",
        )
    n = min(row["n_reps_variant"], row["n_reps_reference"])
    power = f" (only {n} repetitions per variant: the test has little power)" if n < 3 else ""
    return (
        "no difference",
        f"no difference detected: {values}{ratio_text}; Holm p={p:.2g}{power}",
    )
