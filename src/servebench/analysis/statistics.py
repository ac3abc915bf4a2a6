"""Pure statistics of the study (no I/O): metrics, intervals over repetitions, the paired
comparison, Holm, verdicts, Cliff's delta.

The repetition is the statistical unit: requests within one run share the server's state (a
queue, a batch, a GC pause), so they are not independent, and a per-request test would be
pseudo-replication. Every per-variant number is the mean over valid repetitions of a per-run
value (the run's p99, its throughput, ...), with a t-interval over repetitions.

Comparisons follow the design: every variant of a repetition ran the same seeded schedule, side
by side (ABBA order), so the unit of a comparison is the repetition's pair. For a positive
metric the model is the log ratio d_r = log(variant_r / reference_r): its mean over the
repetitions estimates the log of the ratio, a paired t-test on the d_r gives the p-value, and
the same t-distribution gives the ratio's interval exp(mean(d) +- t sd(d) / sqrt(n)). With too
few matched repetitions the pairs are not there and an unpaired Welch test on the logs is used,
named as such. Holm corrects the p-values within each metric's family (every scenario, variant
and target of that metric). The verdict comes from the Holm-adjusted p-value, and the interval
quoted beside it is the ratio's interval at the matching multiplicity-adjusted level
1 - alpha * p / p_holm, which excludes 1 exactly when the adjusted p-value is below alpha: the
sentence can never contradict its own interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
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
    Metric(f"{kind}_{stat}_ms", f"{word} {stat}", "ms", "lower", kind)
    for kind, word in (("latency", "latency"), ("service", "service time"))
    for stat in ("p50", "p90", "p95", "p99", "min", "mean", "max")
]
METRICS: list[Metric] = [
    *LATENCY_METRICS,
    Metric("throughput_rps", "throughput", "req/s", "higher"),
    Metric("failure_rate", "failure rate", "fraction", "lower"),
    Metric("error_rate", "error rate", "fraction", "lower"),
    Metric("rejection_rate", "rejection rate", "fraction", "lower"),
]
METRIC_BY_NAME = {metric.name: metric for metric in METRICS}

# Cliff's delta magnitude thresholds (Romano et al. 2006).
CLIFF_THRESHOLDS = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"))


def finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def mean_or_nan(values: Iterable[float]) -> float:
    array = finite(values)
    return float(array.mean()) if len(array) else math.nan


def t_interval(values: Iterable[float], level: float) -> tuple[float, float]:
    """The `level` t-interval of the mean of `values` (NaN with fewer than 2)."""
    from scipy import stats

    array = finite(values)
    n = len(array)
    if n < 2:
        return math.nan, math.nan
    mean = float(array.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


@dataclass(frozen=True)
class Comparison:
    """A variant against the reference on one metric, over repetitions."""

    design: str  # "paired" | "unpaired" | "" (not tested)
    test: str
    n_variant: int
    n_reference: int
    variant_mean: float
    reference_mean: float
    ratio: float  # of the means on the log scale (geometric), or NaN
    difference: float
    estimate: float  # the log ratio (paired mean of logs), or the mean difference
    standard_error: float
    df: float
    p_value: float
    on_log_scale: bool

    def interval(self, level: float) -> tuple[float, float]:
        """The `level` interval of the ratio (log scale) or of the difference."""
        from scipy import stats

        if not (math.isfinite(self.standard_error) and self.df > 0):
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.standard_error
        low, high = self.estimate - half, self.estimate + half
        return (math.exp(low), math.exp(high)) if self.on_log_scale else (low, high)


def compare(variant: dict[int, float], reference: dict[int, float]) -> Comparison:
    """Variant vs reference from per-repetition values ({repetition: value}): the paired
    model on log ratios when they share 2+ repetitions (every value positive), an unpaired
    Welch test on logs otherwise; differences instead of logs when a value is not positive."""
    from scipy import stats

    v_all = {rep: value for rep, value in variant.items() if math.isfinite(value)}
    r_all = {rep: value for rep, value in reference.items() if math.isfinite(value)}
    common = sorted(set(v_all) & set(r_all))
    v_mean, r_mean = mean_or_nan(v_all.values()), mean_or_nan(r_all.values())
    values = list(v_all.values()) + list(r_all.values())
    use_log = bool(values) and min(values) > 0
    transform = np.log if use_log else (lambda array: array)
    nan = math.nan

    def result(
        design: str, test: str, estimate: float, se: float, df: float, p: float
    ) -> Comparison:
        ratio = (
            math.exp(estimate)
            if use_log and math.isfinite(estimate)
            else (v_mean / r_mean if r_mean else nan)
        )
        return Comparison(
            design, test, len(v_all), len(r_all), v_mean, r_mean, ratio, v_mean - r_mean,
            estimate, se, df, p, use_log,
        )  # fmt: skip

    scale = "log ratios" if use_log else "differences"
    if len(common) >= 2:
        d = transform(np.array([v_all[r] for r in common])) - transform(
            np.array([r_all[r] for r in common])
        )
        mean, n = float(d.mean()), len(d)
        sd = float(d.std(ddof=1))
        if sd <= 1e-12 * max(1.0, abs(mean)):  # identical differences (to rounding): exact
            return result("paired", f"paired t on {scale} (no variance)", mean, 0.0, n - 1,
                          0.0 if mean != 0 else 1.0)  # fmt: skip
        se = sd / math.sqrt(n)
        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
        return result("paired", f"paired t on {scale}", mean, se, n - 1, p)
    v = transform(np.array(list(v_all.values()), dtype=float))
    r = transform(np.array(list(r_all.values()), dtype=float))
    if len(v) < 2 or len(r) < 2:
        estimate = float(v.mean() - r.mean()) if len(v) and len(r) else nan
        return result("", "not tested: needs 2+ repetitions per variant", estimate, nan, 0, nan)
    var_v, var_r = float(v.var(ddof=1)) / len(v), float(r.var(ddof=1)) / len(r)
    se = math.sqrt(var_v + var_r)
    estimate = float(v.mean() - r.mean())
    if se <= 1e-12 * max(1.0, abs(estimate)):
        return result("unpaired", f"Welch t on {scale} (no variance)", estimate, 0.0, 1,
                      0.0 if estimate != 0 else 1.0)  # fmt: skip
    df = (var_v + var_r) ** 2 / (var_v**2 / (len(v) - 1) + var_r**2 / (len(r) - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(2 * stats.t.sf(abs(estimate / se), df))
    return result("unpaired", f"Welch t on {scale}", estimate, se, df, p)


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


def adjusted_level(alpha: float, p_value: float, p_holm: float) -> float:
    """The confidence level whose interval excludes the null exactly when the Holm-adjusted
    p-value is below alpha: 1 - alpha * p / p_holm (for a test whose interval and p-value come
    from the same t-distribution)."""
    if not (math.isfinite(p_value) and math.isfinite(p_holm)) or p_holm <= 0:
        return 1.0 - alpha
    return 1.0 - alpha * p_value / p_holm


def cliffs_delta(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """P(x > y) - P(x < y) over all pairs (ties count for neither), in O(n log n): an effect
    size of two request-level latency distributions (descriptive: not a test)."""
    from scipy import stats

    x, y = finite(x), finite(y)
    if not len(x) or not len(y):
        return math.nan
    ranks = stats.rankdata(np.concatenate([x, y]))
    u = float(ranks[: len(x)].sum() - len(x) * (len(x) + 1) / 2.0)
    return float(2.0 * u / (len(x) * len(y)) - 1.0)


def cliffs_magnitude(delta: float) -> str:
    if not math.isfinite(delta):
        return ""
    size = abs(delta)
    for threshold, name in CLIFF_THRESHOLDS:
        if size < threshold:
            return name
    return "large"


# --------------------------------------------------------------------------- verdicts


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
    noun = {"error_rate": "errors", "rejection_rate": "rejections"}.get(metric.name, "failures")
    return f"more {noun}" if variant_larger else f"fewer {noun}"


def verdict(
    metric: Metric, variant: str, reference: str, row: dict[str, Any], *, alpha: float
) -> tuple[str, str]:
    """(class, sentence) of one comparison row: `better` / `worse` when the Holm-adjusted
    p-value is below alpha, `no difference` when it is not, `not tested` without 2+
    repetitions per variant. The interval in the sentence is the one at the adjusted level
    (`ratio_ci_adj_*`), which excludes 1 exactly when the verdict is better or worse."""
    v, r = row["variant_mean"], row["reference_mean"]
    values = (
        f"{metric.label} {_format_value(v, metric.unit)} vs "
        f"{_format_value(r, metric.unit)} for {reference}"
    )
    p = row["p_holm"]
    if not math.isfinite(p):
        n = min(row["n_reps_variant"], row["n_reps_reference"])
        return (
            "not tested",
            f"not tested ({n} valid repetition(s); 2+ per variant needed): {variant} {values}",
        )
    on_log = bool(row["on_log_scale"])
    estimate = row["ratio"] if on_log else row["difference"]
    low, high = row["adj_ci_low"], row["adj_ci_high"]
    level = 100 * row["adj_ci_level"]
    if on_log:
        interval = f", {estimate:.3g}x ({level:.4g}% CI {low:.3g}-{high:.3g}x, Holm-adjusted)"
    else:
        unit = "" if metric.unit == "fraction" else f" {metric.unit}"
        interval = (
            f", difference {estimate:+.3g}{unit} ({level:.4g}% CI {low:+.3g} to {high:+.3g}, "
            "Holm-adjusted)"
        )
    test = f"{row['test']} over {min(row['n_reps_variant'], row['n_reps_reference'])} repetitions"
    if p < alpha:
        larger = estimate > (1.0 if on_log else 0.0)
        good = larger == (metric.better == "higher")
        return (
            "better" if good else "worse",
            f"{variant} {_direction_words(metric, larger)}: {values}{interval}; {test}, Holm "
            f"p={p:.2g}",
        )
    return "no difference", f"no difference detected: {values}{interval}; {test}, Holm p={p:.2g}"
