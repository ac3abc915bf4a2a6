"""Statistics of the study: run records, bootstrap CIs over repetitions, tests, Holm, tables.

The repetition is the statistical unit: requests within one run share the server's state (a
queue, a batch, a GC pause), so they are not independent. Every per-variant number is the mean
over valid repetitions of a per-run value (the run's p99, its throughput, ...) with a percentile
bootstrap CI that resamples repetitions. Comparisons add a request-level view (Mann-Whitney U
and Cliff's delta on the pooled per-request latencies), which describes how the latency
distributions differ but, because requests are not independent, is not the test the verdicts
rest on: the verdict uses a repetition-level Welch t-test, Holm-corrected across the family.

Sections: pure statistics (no I/O), then reading the results tree, then the tables.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.experiment import RunSpec, calibration_dir, derived_seed

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AnalysisSettings:
    """config `analysis:` (see config/schema.yaml)."""

    ci_level: float = 0.95
    bootstrap_resamples: int = 10000
    alpha: float = 0.05
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AnalysisSettings:
        analysis = config.get("analysis") or {}
        return cls(
            ci_level=float(analysis.get("ci_level", 0.95)),
            bootstrap_resamples=int(analysis.get("bootstrap_resamples", 10000)),
            alpha=float(analysis.get("alpha", 0.05)),
            seed=int(config.get("seed", 0)),
        )


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
# Metrics whose share of the total gain ablation.csv attributes to each optimization level.
ABLATION_METRICS = ["latency_p50_ms", "latency_p99_ms"]
ABLATION_PREFIX = "ablation-"
# Cliff's delta magnitude thresholds (Romano et al. 2006).
CLIFF_THRESHOLDS = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"))

# --------------------------------------------------------------------------- statistics


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


# --------------------------------------------------------------------------- results tree

RUN_FILES = ("summary.json", "meta.json", "requests.parquet", "server_metrics.csv", "resources.csv")


@dataclass
class RunRecord:
    """One run of the matrix as found on disk."""

    spec: RunSpec
    path: Path
    status: str  # valid | invalid | failed | missing
    reasons: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.spec.target, self.spec.variant, self.spec.scenario)


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return None, f"{path.name} is unreadable: {error}"
    if not isinstance(value, dict):
        return None, f"{path.name} is not a JSON object"
    return value, None


def load_run(spec: RunSpec, results_dir: str | Path) -> RunRecord:
    """Read a run folder; never raises for missing or broken files (they become reasons)."""
    path = spec.path(results_dir)
    summary, summary_error = _read_json(path / "summary.json")
    meta, meta_error = _read_json(path / "meta.json")
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    reasons: list[str] = []
    if summary is None:
        if summary_error:
            reasons.append(summary_error)
        elif meta is not None:
            reasons.append("no summary.json (the run did not finish)")
        else:
            reasons.append("not run: no summary.json or meta.json")
        reasons += [str(reason) for reason in (meta or {}).get("invalid_reasons") or []]
        if meta is not None and meta.get("error"):
            reasons.append(str(meta["error"]))
        status = "failed" if (meta is not None or summary_error) else "missing"
        return RunRecord(spec, path, status, _unique(reasons), {}, meta or {}, missing)
    if meta_error:
        reasons.append(meta_error)
    reasons += [str(reason) for reason in summary.get("invalid_reasons") or []]
    if summary.get("error"):
        status = "failed"
        if not any(str(summary["error"]) in reason for reason in reasons):
            reasons.append(str(summary["error"]))
    elif not summary.get("valid", False):
        status = "invalid"
        if not reasons:
            reasons.append("marked invalid without a reason")
    else:
        status = "valid"
    return RunRecord(spec, path, status, _unique(reasons), summary, meta or {}, missing)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def load_runs(specs: Iterable[RunSpec], results_dir: str | Path) -> list[RunRecord]:
    return [load_run(spec, results_dir) for spec in specs]


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Derived per-run numbers: measured request count, error and rejection rates.

    Error rate counts failed, timed-out and dropped (never sent: the generator's in-flight cap)
    requests; rejections (429/503) are counted apart because they are the server shedding load
    on purpose.
    """
    counts = summary.get("counts") or {}
    measured = sum(int(value) for value in counts.values())
    errors = sum(int(counts.get(name, 0)) for name in ("failed", "timeout", "dropped"))
    return {
        "n_measured": measured,
        "n_ok": int(counts.get("ok", 0)),
        "error_rate": errors / measured if measured else math.nan,
        "rejection_rate": int(counts.get("rejected", 0)) / measured if measured else math.nan,
    }


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}_{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, default=str)
    else:
        out[prefix] = value


def runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """runs.csv: one row per run of the matrix with every summary.json field (nested keys
    joined by `_`), the derived rates, and meta.json's provenance as `meta_*` columns."""
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "target": record.spec.target,
            "variant": record.spec.variant,
            "scenario": record.spec.scenario,
            "repetition": record.spec.repetition,
            "status": record.status,
            "valid": record.valid,
            "invalid_reasons": " | ".join(record.reasons),
            "missing_files": " ".join(record.missing_files),
            "run_dir": str(record.path),
        }
        flat: dict[str, Any] = {}
        _flatten({k: v for k, v in record.summary.items() if k not in row}, "", flat)
        row.update(flat)
        row.update(run_metrics(record.summary) if record.summary else {})
        meta_flat: dict[str, Any] = {}
        _flatten(record.meta, "meta", meta_flat)
        row.update(meta_flat)
        rows.append(row)
    return pd.DataFrame(rows)


def read_request_latencies(run_dir: Path) -> dict[str, np.ndarray] | None:
    """latency_ms and service_ms of the measured (not warm-up), ok requests; None if the run
    has no readable requests.parquet."""
    path = Path(run_dir) / "requests.parquet"
    if not path.is_file():
        return None
    try:
        table = pd.read_parquet(path, columns=["latency_ms", "service_ms", "outcome", "in_warmup"])
    except Exception:  # noqa: BLE001 - a broken file is reported, not fatal
        return None
    keep = (table["outcome"] == "ok") & ~table["in_warmup"].astype(bool)
    return {
        "latency": table.loc[keep, "latency_ms"].to_numpy(dtype=float),
        "service": table.loc[keep, "service_ms"].to_numpy(dtype=float),
    }


def read_requests(run_dir: Path) -> pd.DataFrame | None:
    """The whole requests.parquet of a run, or None."""
    path = Path(run_dir) / "requests.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # noqa: BLE001
        return None


def pooled_latencies(
    records: Sequence[RunRecord], problems: list[str] | None = None
) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """Per (target, variant, scenario): the measured ok latencies of its valid runs, pooled."""
    pooled: dict[tuple[str, str, str], dict[str, list[np.ndarray]]] = {}
    for record in records:
        if not record.valid:
            continue
        latencies = read_request_latencies(record.path)
        if latencies is None:
            if problems is not None:
                problems.append(
                    f"{record.path}: no readable requests.parquet; the run counts in the "
                    "repetition-level statistics but not in the request-level test"
                )
            continue
        group = pooled.setdefault(record.key, {"latency": [], "service": []})
        for kind, values in latencies.items():
            group[kind].append(values)
    return {
        key: {kind: np.concatenate(parts) if parts else np.array([]) for kind, parts in g.items()}
        for key, g in pooled.items()
    }


# --------------------------------------------------------------------------- tables


def _rng(settings: AnalysisSettings, *parts: object) -> np.random.Generator:
    """A bootstrap stream per table cell, so a cell's CI does not depend on the others."""
    return np.random.default_rng(derived_seed(settings.seed, "bootstrap", *parts))


def _per_run_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in runs.columns:
        return pd.Series(np.nan, index=runs.index, dtype=float)
    return pd.to_numeric(runs[metric], errors="coerce")


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(values, key=lambda name: (rank.get(name, len(rank)), name))


def summary_table(
    runs: pd.DataFrame,
    settings: AnalysisSettings,
    variants: Sequence[str] = (),
    scenarios: Sequence[str] = (),
) -> pd.DataFrame:
    """summary.csv: per (target, variant, scenario), over valid repetitions, the mean of each
    metric and its bootstrap CI (resampling repetitions)."""
    rows = []
    if runs.empty:
        return pd.DataFrame(columns=_summary_columns())
    for (target, variant, scenario), group in runs.groupby(
        ["target", "variant", "scenario"], sort=False
    ):
        valid = group[group["valid"].astype(bool)]
        row: dict[str, Any] = {
            "target": target,
            "variant": variant,
            "scenario": scenario,
            "n_repetitions": int(len(valid)),
            "n_runs": int(len(group)),
            "n_excluded": int(len(group) - len(valid)),
            "n_requests_ok": int(_per_run_values(valid, "n_ok").fillna(0).sum()),
            "target_rate_rps": mean_or_nan(_per_run_values(valid, "target_rate_rps")),
            "offered_rate_rps": mean_or_nan(_per_run_values(valid, "offered_rate_rps")),
        }
        for metric in METRICS:
            values = _per_run_values(valid, metric.name).dropna().to_numpy()
            low, high = bootstrap_ci(
                values,
                level=settings.ci_level,
                n_resamples=settings.bootstrap_resamples,
                rng=_rng(settings, "summary", target, variant, scenario, metric.name),
            )
            row[metric.name] = mean_or_nan(values)
            row[f"{metric.name}_ci_low"] = low
            row[f"{metric.name}_ci_high"] = high
        rows.append(row)
    table = pd.DataFrame(rows, columns=_summary_columns())
    return _sort(table, variants, scenarios)


def _summary_columns() -> list[str]:
    columns = [
        "target",
        "variant",
        "scenario",
        "n_repetitions",
        "n_runs",
        "n_excluded",
        "n_requests_ok",
        "target_rate_rps",
        "offered_rate_rps",
    ]
    for metric in METRICS:
        columns += [metric.name, f"{metric.name}_ci_low", f"{metric.name}_ci_high"]
    return columns


def _sort(table: pd.DataFrame, variants: Sequence[str], scenarios: Sequence[str]) -> pd.DataFrame:
    if table.empty:
        return table
    variant_rank = {name: i for i, name in enumerate(variants)}
    scenario_rank = {name: i for i, name in enumerate(scenarios)}
    keys = pd.DataFrame(
        {
            "t": table["target"],
            "s": table["scenario"].map(lambda s: scenario_rank.get(s, len(scenario_rank))),
            "v": table["variant"].map(lambda v: variant_rank.get(v, len(variant_rank))),
        }
    )
    order = keys.sort_values(["t", "s", "v"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


COMPARISON_COLUMNS = [
    "target",
    "scenario",
    "variant",
    "reference",
    "metric",
    "unit",
    "better",
    "n_reps_variant",
    "n_reps_reference",
    "variant_mean",
    "reference_mean",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "change_percent",
    "bootstrap",
    "rep_test",
    "rep_p_value",
    "rep_p_holm",
    "n_requests_variant",
    "n_requests_reference",
    "mwu_u",
    "mwu_p_value",
    "mwu_p_holm",
    "cliffs_delta",
    "cliffs_magnitude",
    "verdict_class",
    "verdict",
]


def comparison_table(
    runs: pd.DataFrame,
    latencies: dict[tuple[str, str, str], dict[str, np.ndarray]],
    settings: AnalysisSettings,
    reference: str,
    variants: Sequence[str],
    scenarios: Sequence[str],
) -> pd.DataFrame:
    """comparison.csv: every variant vs `reference`, per target, scenario and metric.

    Ratio and difference of the repetition means with bootstrap CIs (paired by repetition when
    both variants have the same valid repetitions: they ran the same schedule side by side),
    the repetition-level Welch test, and for latency metrics the request-level Mann-Whitney U
    and Cliff's delta (variant vs reference: negative delta = variant faster). Holm corrects
    the repetition-level p-values over all rows and the request-level ones over the distinct
    request-level tests (one per variant, scenario and latency kind).
    """
    rows = []
    if runs.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    valid = runs[runs["valid"].astype(bool)]
    for target in _ordered(runs["target"], ()):
        for scenario in _ordered(runs.loc[runs["target"] == target, "scenario"], scenarios):
            here = valid[(valid["target"] == target) & (valid["scenario"] == scenario)]
            reference_runs = here[here["variant"] == reference]
            present = runs[(runs["target"] == target) & (runs["scenario"] == scenario)]
            for variant in _ordered(present["variant"], variants):
                if variant == reference:
                    continue
                variant_runs = here[here["variant"] == variant]
                for metric in METRICS:
                    rows.append(
                        _comparison_row(
                            target,
                            scenario,
                            variant,
                            reference,
                            metric,
                            variant_runs,
                            reference_runs,
                            latencies,
                            settings,
                        )
                    )
    table = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "verdict"])
    if table.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    table["rep_p_holm"] = holm(table["rep_p_value"].to_numpy(dtype=float))
    # One request-level test per (target, scenario, variant, latency kind), not per percentile.
    kind = table["metric"].map(lambda name: METRIC_BY_NAME[name].latency_kind)
    test_keys = table["target"] + "|" + table["scenario"] + "|" + table["variant"] + "|" + kind
    distinct = table[kind.notna()].assign(key=test_keys[kind.notna()]).drop_duplicates("key")
    adjusted = dict(
        zip(distinct["key"], holm(distinct["mwu_p_value"].to_numpy(dtype=float)), strict=True)
    )
    table["mwu_p_holm"] = [
        adjusted.get(key, math.nan) if isinstance(key, str) else math.nan for key in test_keys
    ]
    classes, sentences = [], []
    for record in table.to_dict("records"):
        metric = METRIC_BY_NAME[record["metric"]]
        verdict_class, sentence = verdict(
            metric,
            record["variant"],
            record["reference"],
            record,
            alpha=settings.alpha,
            ci_level=settings.ci_level,
        )
        classes.append(verdict_class)
        sentences.append(sentence)
    table["verdict_class"] = classes
    table["verdict"] = sentences
    return table[COMPARISON_COLUMNS]


def _comparison_row(
    target: str,
    scenario: str,
    variant: str,
    reference: str,
    metric: Metric,
    variant_runs: pd.DataFrame,
    reference_runs: pd.DataFrame,
    latencies: dict[tuple[str, str, str], dict[str, np.ndarray]],
    settings: AnalysisSettings,
) -> dict[str, Any]:
    v_values = _per_run_values(variant_runs, metric.name)
    r_values = _per_run_values(reference_runs, metric.name)
    v_reps = dict(zip(variant_runs["repetition"], v_values, strict=True))
    r_reps = dict(zip(reference_runs["repetition"], r_values, strict=True))
    v_reps = {rep: value for rep, value in v_reps.items() if math.isfinite(value)}
    r_reps = {rep: value for rep, value in r_reps.items() if math.isfinite(value)}
    v = np.array(list(v_reps.values()), dtype=float)
    r = np.array(list(r_reps.values()), dtype=float)
    paired = set(v_reps) == set(r_reps) and len(v_reps) >= 2
    if paired:
        common = sorted(v_reps)
        v = np.array([v_reps[rep] for rep in common])
        r = np.array([r_reps[rep] for rep in common])
    v_mean, r_mean = mean_or_nan(v), mean_or_nan(r)
    ratio = v_mean / r_mean if math.isfinite(r_mean) and r_mean != 0 else math.nan
    row: dict[str, Any] = {
        "target": target,
        "scenario": scenario,
        "variant": variant,
        "reference": reference,
        "metric": metric.name,
        "unit": metric.unit,
        "better": metric.better,
        "n_reps_variant": len(v),
        "n_reps_reference": len(r),
        "variant_mean": v_mean,
        "reference_mean": r_mean,
        "difference": v_mean - r_mean,
        "ratio": ratio,
        "change_percent": 100.0 * (ratio - 1.0) if math.isfinite(ratio) else math.nan,
        "bootstrap": ("paired" if paired else "independent") if len(v) >= 2 and len(r) >= 2 else "",
    }
    row.update(
        two_sample_bootstrap(
            v,
            r,
            level=settings.ci_level,
            n_resamples=settings.bootstrap_resamples,
            rng=_rng(settings, "comparison", target, scenario, variant, metric.name),
            paired=paired,
        )
    )
    row["rep_p_value"], row["rep_test"] = repetition_test(v, r)
    row.update(
        {
            "n_requests_variant": math.nan,
            "n_requests_reference": math.nan,
            "mwu_u": math.nan,
            "mwu_p_value": math.nan,
            "cliffs_delta": math.nan,
            "cliffs_magnitude": "",
        }
    )
    if metric.latency_kind is not None:
        x = latencies.get((target, variant, scenario), {}).get(metric.latency_kind)
        y = latencies.get((target, reference, scenario), {}).get(metric.latency_kind)
        if x is not None and y is not None and len(x) and len(y):
            test = mann_whitney(x, y)
            row.update(
                {
                    "n_requests_variant": test.n_x,
                    "n_requests_reference": test.n_y,
                    "mwu_u": test.u,
                    "mwu_p_value": test.p_value,
                    "cliffs_delta": test.cliffs_delta,
                    "cliffs_magnitude": cliffs_magnitude(test.cliffs_delta),
                }
            )
    return row


ABLATION_COLUMNS = [
    "target",
    "scenario",
    "metric",
    "unit",
    "level",
    "variant",
    "n_reps",
    "reference_value",
    "optimized_value",
    "level_value",
    "total_gain",
    "level_gain",
    "share_of_total_gain",
    "share_ci_low",
    "share_ci_high",
    "note",
]


def ablation_levels(all_variants: Iterable[str]) -> dict[str, str]:
    """{level: variant} of the config's ablation variants (`ablation-<level>`)."""
    return {
        name[len(ABLATION_PREFIX) :]: name
        for name in all_variants
        if name.startswith(ABLATION_PREFIX)
    }


def ablation_table(
    runs: pd.DataFrame,
    capacity: pd.DataFrame,
    settings: AnalysisSettings,
    *,
    reference: str,
    optimized: str,
    all_variants: Sequence[str],
    scenarios: Sequence[str],
) -> pd.DataFrame:
    """ablation.csv: the share of the total gain (reference -> optimized) that each
    optimization level alone (its `ablation-<level>` variant over the reference) achieves.

    Gain is measured in the better direction (a latency reduction, a capacity increase).
    Shares need not add up to 1: the `interaction` row is 1 minus their sum (levels that help
    each other, or overlap). Levels whose variant did not run get a row with a note.
    """
    levels = ablation_levels(all_variants)
    rows: list[dict[str, Any]] = []
    if not levels:
        return pd.DataFrame(
            [{"note": "the config defines no ablation-<level> variant"}], columns=ABLATION_COLUMNS
        )
    valid = runs[runs["valid"].astype(bool)] if not runs.empty else runs
    ran = set(valid["variant"]) if not valid.empty else set()
    ran |= (
        set(capacity.loc[capacity["capacity_rps"].notna(), "variant"]) if len(capacity) else set()
    )
    if not any(variant in ran for variant in levels.values()):
        names = ", ".join(levels.values())
        return pd.DataFrame(
            [
                {
                    "level": level,
                    "variant": variant,
                    "note": f"no ablation variant was run: add {names} to experiment.variants",
                }
                for level, variant in levels.items()
            ],
            columns=ABLATION_COLUMNS,
        )
    targets = sorted(set(valid["target"])) if not valid.empty else []
    for target in targets:
        for scenario in _ordered(valid.loc[valid["target"] == target, "scenario"], scenarios):
            here = valid[(valid["target"] == target) & (valid["scenario"] == scenario)]
            for metric_name in ABLATION_METRICS:
                metric = METRIC_BY_NAME[metric_name]

                def values(variant: str, here: pd.DataFrame = here, name: str = metric_name):
                    return _per_run_values(here[here["variant"] == variant], name).dropna()

                rows += _ablation_rows(
                    target,
                    scenario,
                    metric.name,
                    metric.unit,
                    metric.better,
                    {name: values(name).to_numpy() for name in (reference, optimized)},
                    {level: values(variant).to_numpy() for level, variant in levels.items()},
                    levels,
                    reference,
                    optimized,
                    settings,
                )
    if len(capacity):
        for target in sorted(set(capacity["target"])):
            here = capacity[capacity["target"] == target]
            caps = here.set_index("variant")["capacity_rps"]
            flags = here["capacity_is_lower_bound"] if "capacity_is_lower_bound" in here else None
            bounds = (
                sorted(here.loc[flags.map(lambda x: str(x).lower() == "true"), "variant"])
                if flags is not None
                else []
            )

            def cap(variant: str, caps: pd.Series = caps) -> np.ndarray:
                value = caps.get(variant, math.nan)
                return np.array([value]) if pd.notna(value) else np.array([])

            rows += _ablation_rows(
                target,
                "calibration",
                "capacity_rps",
                "req/s",
                "higher",
                {name: cap(name) for name in (reference, optimized)},
                {level: cap(variant) for level, variant in levels.items()},
                levels,
                reference,
                optimized,
                settings,
            )
            if bounds:
                for row in rows:
                    if row["metric"] == "capacity_rps" and row["target"] == target:
                        caveat = f"capacity of {', '.join(bounds)} is only a lower bound"
                        row["note"] = "; ".join(x for x in (row["note"], caveat) if x)
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _ablation_rows(
    target: str,
    scenario: str,
    metric: str,
    unit: str,
    better: str,
    ends: dict[str, np.ndarray],
    level_values: dict[str, np.ndarray],
    levels: dict[str, str],
    reference: str,
    optimized: str,
    settings: AnalysisSettings,
) -> list[dict[str, Any]]:
    sign = 1.0 if better == "higher" else -1.0
    ref, opt = ends[reference], ends[optimized]
    ref_mean, opt_mean = mean_or_nan(ref), mean_or_nan(opt)
    total = sign * (opt_mean - ref_mean)
    base = {"target": target, "scenario": scenario, "metric": metric, "unit": unit}
    rows = []
    shares = []
    for level, variant in levels.items():
        values = level_values[level]
        row = {
            **base,
            "level": level,
            "variant": variant,
            "n_reps": len(values),
            "reference_value": ref_mean,
            "optimized_value": opt_mean,
            "level_value": mean_or_nan(values),
            "total_gain": total,
            "share_ci_low": math.nan,
            "share_ci_high": math.nan,
            "note": "",
        }
        row["level_gain"] = sign * (row["level_value"] - ref_mean)
        if not len(values):
            row["note"] = f"{variant} was not run (or has no valid run) here"
        elif not len(ref) or not len(opt):
            row["note"] = f"{reference} or {optimized} has no valid run here: no total gain"
        elif total == 0 or not math.isfinite(total):
            row["note"] = "no total gain to share"
        row["share_of_total_gain"] = (
            row["level_gain"] / total if not row["note"] and total else math.nan
        )
        if not row["note"] and min(len(values), len(ref), len(opt)) >= 2:
            distribution = bootstrap_distribution(
                [values, ref, opt],
                lambda lv, rv, ov: _ratio_or_nan(
                    sign * (lv.mean(axis=1) - rv.mean(axis=1)),
                    sign * (ov.mean(axis=1) - rv.mean(axis=1)),
                ),
                n_resamples=settings.bootstrap_resamples,
                rng=_rng(settings, "ablation", target, scenario, metric, level),
            )
            row["share_ci_low"], row["share_ci_high"] = percentile_interval(
                distribution, settings.ci_level
            )
        if row["note"] == "" and total < 0:
            row["note"] = f"{optimized} is worse than {reference} here: shares are of a loss"
        shares.append(row["share_of_total_gain"])
        rows.append(row)
    finite = [share for share in shares if math.isfinite(share)]
    if finite and len(finite) == len(levels):
        summed = float(sum(finite))
        for level, share, note in (
            ("sum of levels", summed, "the levels' shares added up"),
            ("interaction", 1.0 - summed, "1 - sum: gain only the levels together give"),
        ):
            rows.append(
                {
                    **base,
                    "level": level,
                    "variant": "",
                    "reference_value": ref_mean,
                    "optimized_value": opt_mean,
                    "total_gain": total,
                    "share_of_total_gain": share,
                    "share_ci_low": math.nan,
                    "share_ci_high": math.nan,
                    "note": note,
                }
            )
    return rows


CAPACITY_COLUMNS = [
    "target",
    "variant",
    "capacity_rps",
    "capacity_achieved_rps",
    "capacity_is_lower_bound",
    "speedup_vs_reference",
    "slo_p99_ms",
    "achieved_rate_tolerance",
    "n_steps",
    "n_sustained_steps",
    "max_achieved_rate_rps",
    "note",
]


def read_calibration(
    results_dir: str | Path, target: str, variant: str
) -> tuple[dict[str, Any] | None, pd.DataFrame | None, list[str]]:
    """(capacity.json, steps.csv, problems) of one variant's calibration."""
    folder = calibration_dir(results_dir, target, variant)
    problems = []
    capacity, error = _read_json(folder / "capacity.json")
    if capacity is None:
        problems.append(error or f"{folder}: no capacity.json (calibration not run)")
    steps = None
    if (folder / "steps.csv").is_file():
        try:
            steps = pd.read_csv(folder / "steps.csv")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{folder / 'steps.csv'}: unreadable ({exc})")
    else:
        problems.append(f"{folder}: no steps.csv")
    return capacity, steps, problems


def capacity_achieved_rps(steps: pd.DataFrame) -> float | None:
    """What the server answered per second in its highest sustained step. `capacity_rps` is
    that step's nominal rate; a short step's random schedule can offer 10-15% more or less, so
    this is the figure to quote as throughput."""
    if not {"sustained", "offered_rate_rps", "achieved_rate_rps"} <= set(steps.columns):
        return None
    sustained = steps[steps["sustained"].astype(bool)]
    if not len(sustained):
        return None
    return float(sustained.sort_values("offered_rate_rps")["achieved_rate_rps"].iloc[-1])


def capacity_table(
    results_dir: str | Path,
    target: str,
    variants: Sequence[str],
    reference: str,
    problems: list[str] | None = None,
) -> pd.DataFrame:
    """capacity.csv: the calibrated capacity of each variant and its speed-up over the
    reference variant (capacity ratio)."""
    rows = []
    for variant in variants:
        capacity, steps, found = read_calibration(results_dir, target, variant)
        if problems is not None:
            problems += found
        row: dict[str, Any] = {"target": target, "variant": variant, "note": ""}
        if capacity is not None:
            row["capacity_rps"] = capacity.get("capacity_rps")
            row["capacity_is_lower_bound"] = capacity.get("capacity_is_lower_bound")
            row["slo_p99_ms"] = capacity.get("slo_p99_ms")
            row["achieved_rate_tolerance"] = capacity.get("achieved_rate_tolerance")
            if capacity.get("capacity_rps") is None:
                row["note"] = capacity.get("note") or "no step was sustained"
        else:
            row["note"] = "not calibrated (no capacity.json)"
        if steps is not None and len(steps):
            row["n_steps"] = len(steps)
            if "sustained" in steps.columns:
                row["n_sustained_steps"] = int(steps["sustained"].astype(bool).sum())
            if "achieved_rate_rps" in steps.columns:
                row["max_achieved_rate_rps"] = float(steps["achieved_rate_rps"].max())
                row["capacity_achieved_rps"] = capacity_achieved_rps(steps)
        rows.append(row)
    table = pd.DataFrame(rows, columns=CAPACITY_COLUMNS)
    table["capacity_rps"] = pd.to_numeric(table["capacity_rps"], errors="coerce")
    reference_capacity = table.loc[table["variant"] == reference, "capacity_rps"]
    ref_value = float(reference_capacity.iloc[0]) if len(reference_capacity) else math.nan
    table["speedup_vs_reference"] = (
        table["capacity_rps"] / ref_value if math.isfinite(ref_value) and ref_value > 0 else np.nan
    )
    return table


INVALID_COLUMNS = ["target", "variant", "scenario", "repetition", "status", "reasons", "run_dir"]


def invalid_runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every run that is not valid (invalid, failed, missing) with its reasons."""
    rows = [
        {
            "target": r.spec.target,
            "variant": r.spec.variant,
            "scenario": r.spec.scenario,
            "repetition": r.spec.repetition,
            "status": r.status,
            "reasons": " | ".join(r.reasons),
            "run_dir": str(r.path),
        }
        for r in records
        if not r.valid
    ]
    return pd.DataFrame(rows, columns=INVALID_COLUMNS)


# --------------------------------------------------------------------------- all tables

TABLE_NAMES = (
    "runs",
    "summary",
    "comparison",
    "ablation",
    "capacity",
    "invalid_runs",
    "problems",
)


def build_tables(
    config: dict[str, Any], specs: Sequence[RunSpec], results_dir: str | Path
) -> dict[str, pd.DataFrame]:
    """Every table of results/tables/ from the results tree (missing files are listed in the
    `problems` table, never fatal)."""
    settings = AnalysisSettings.from_config(config)
    experiment = config.get("experiment", {})
    reference = experiment.get("reference_variant", "baseline")
    variants = list(experiment.get("variants", []))
    scenarios = list(experiment.get("scenarios", []))
    all_variants = list(config.get("variants", {}))
    target = config.get("deploy", {}).get("target", "local")
    problems: list[str] = []
    records = load_runs(specs, results_dir)
    for record in records:
        if record.status == "missing":
            problems.append(f"{record.path}: not run (no summary.json)")
        elif record.valid:
            absent = [name for name in record.missing_files if name != "summary.json"]
            if absent:
                problems.append(f"{record.path}: missing {', '.join(absent)}")
    runs = runs_table(records)
    latencies = pooled_latencies(records, problems)
    capacity = capacity_table(results_dir, target, variants, reference, problems)
    optimized = "optimized" if "optimized" in all_variants else _first_other(variants, reference)
    tables = {
        "runs": runs,
        "summary": summary_table(runs, settings, variants, scenarios),
        "comparison": comparison_table(runs, latencies, settings, reference, variants, scenarios),
        "ablation": ablation_table(
            runs,
            capacity,
            settings,
            reference=reference,
            optimized=optimized,
            all_variants=all_variants,
            scenarios=scenarios,
        ),
        "capacity": capacity,
        "invalid_runs": invalid_runs_table(records),
        "problems": pd.DataFrame({"problem": problems}, columns=["problem"]),
    }
    return tables


def _first_other(variants: Sequence[str], reference: str) -> str:
    for name in variants:
        if name != reference and not name.startswith(ABLATION_PREFIX):
            return name
    return "optimized"


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table as <name>.csv (atomically); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in tables.items():
        path = out / f"{name}.csv"
        temporary = path.with_suffix(".csv.tmp")
        table.to_csv(temporary, index=False, float_format="%.6g")
        temporary.replace(path)
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- resilience hook

RESILIENCE_COLUMNS = [
    "run_dir",
    "faults",
    "n_requests",
    "n_ok",
    "n_not_ok",
    "n_not_ok_during_faults",
    "p99_before_ms",
    "p99_during_ms",
    "p99_after_ms",
    "recovery_s",
]


def _ok_p99(latency_ms: np.ndarray, mask: np.ndarray) -> float:
    values = latency_ms[mask]
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 99)) if len(values) else math.nan


def resilience_table(fault_run_dirs: Sequence[str | Path], window_s: float = 1.0) -> pd.DataFrame:
    """Per resilience run: requests lost (not ok) overall and during the fault windows, p99
    before / during / after the faults, and the recovery time: seconds from the end of the
    last fault until the first `window_s` window after it in which every request scheduled was
    answered ok. Fault windows come from faults.json ({kind, start_s, end_s} in seconds since
    the schedule start; see figures.read_faults). Not wired into the workflow yet."""
    from servebench.figures import read_faults

    rows = []
    for run_dir in map(Path, fault_run_dirs):
        requests = read_requests(run_dir)
        faults = read_faults(run_dir)
        row: dict[str, Any] = {
            "run_dir": str(run_dir),
            "faults": "; ".join(
                f"{f.get('kind', 'fault')} {f.get('start_s')}-{f.get('end_s')} s" for f in faults
            ),
        }
        if requests is None or not len(requests):
            rows.append(row)
            continue
        scheduled = requests["scheduled_s"].to_numpy(dtype=float)
        ok = requests["outcome"].astype(str).to_numpy() == "ok"
        latency = requests["latency_ms"].to_numpy(dtype=float)
        during = np.zeros(len(requests), dtype=bool)
        for fault in faults:
            start = float(fault.get("start_s", math.nan))
            end = float(fault.get("end_s", start))
            during |= (scheduled >= start) & (scheduled <= end)
        starts = [float(f["start_s"]) for f in faults if f.get("start_s") is not None]
        ends = [float(f.get("end_s", f["start_s"])) for f in faults if f.get("start_s") is not None]
        before = scheduled < min(starts) if starts else np.ones(len(requests), dtype=bool)
        after = scheduled > max(ends) if ends else np.zeros(len(requests), dtype=bool)

        recovery = math.nan
        if ends:
            last = max(ends)
            horizon = float(np.nanmax(scheduled))
            t = last
            while t < horizon:
                window = (scheduled >= t) & (scheduled < t + window_s)
                if window.any() and ok[window].all():
                    recovery = t - last
                    break
                t += window_s
        row.update(
            {
                "n_requests": int(len(requests)),
                "n_ok": int(ok.sum()),
                "n_not_ok": int((~ok).sum()),
                "n_not_ok_during_faults": int((~ok & during).sum()),
                "p99_before_ms": _ok_p99(latency, ok & before),
                "p99_during_ms": _ok_p99(latency, ok & during),
                "p99_after_ms": _ok_p99(latency, ok & after),
                "recovery_s": recovery,
            }
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=RESILIENCE_COLUMNS)


# --------------------------------------------------------------------------- workflow inputs


def workflow_analysis_inputs(
    config: dict[str, Any], model_name: str, runtimes: Sequence[str]
) -> dict[str, list[str]]:
    """The files the analysis rules read (workflow/rules/analysis.smk): the finished runs'
    summary.json and meta.json, the calibration, the token lengths and the model stage's
    outputs. With `analysis.existing_runs_only`, only those already on disk."""
    from servebench.experiment import run_matrix

    results_dir = Path(config["results_dir"])
    existing_only = bool((config.get("analysis") or {}).get("existing_runs_only", False))
    target = config["deploy"]["target"]
    runs = []
    for spec in run_matrix(config):
        folder = spec.path(results_dir)
        runs += [str(folder / "summary.json"), str(folder / "meta.json")]
    calibration = []
    for variant in config["experiment"]["variants"]:
        folder = calibration_dir(results_dir, target, variant)
        calibration += [str(folder / "steps.csv"), str(folder / "capacity.json")]
    model_dir = results_dir / "model" / model_name
    files = {
        "runs": runs,
        "calibration": calibration,
        "token_lengths": [
            str(results_dir / "data" / "payload_token_lengths.csv"),
            str(results_dir / "data" / "payload_token_lengths_summary.json"),
        ],
        "inprocess_bench": [str(model_dir / r / "inprocess_bench.csv") for r in runtimes],
        "model": [
            str(model_dir / r / name)
            for r in runtimes
            for name in ("provenance.json", "fidelity.json")
        ],
    }
    if existing_only:
        files = {key: [p for p in paths if Path(p).is_file()] for key, paths in files.items()}
    return files


def source_hash(*module_names: str) -> str:
    """sha256 of the source of servebench modules (e.g. "stats", "figures"): a param of the
    analysis rules, so that editing the library reruns the analysis (and only the analysis;
    Snakemake's own code trigger sees only the rules' scripts)."""
    import hashlib

    digest = hashlib.sha256()
    package_dir = Path(__file__).resolve().parent
    for name in module_names:
        digest.update((package_dir / f"{name}.py").read_bytes())
    return digest.hexdigest()
