"""The tables of results/tables/: runs, summary, comparison, ablation, capacity, invalid runs,
problems; built from the results tree (servebench.analysis.results) with the statistics of
servebench.analysis.statistics."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.analysis.results import (
    RunRecord,
    _flatten,
    bento_records,
    load_runs,
    pooled_latencies,
    read_calibration,
    run_metrics,
)
from servebench.analysis.statistics import (
    METRIC_BY_NAME,
    METRICS,
    Metric,
    adjusted_level,
    cliffs_delta,
    cliffs_magnitude,
    compare,
    holm,
    mean_or_nan,
    t_interval,
    verdict,
)
from servebench.layout import INPROCESS_BENCH, SUMMARY, TUNING, Layout
from servebench.matrix import RunSpec, run_matrix
from servebench.queueing import mg1_capacity_rps
from servebench.records import inprocess_ceiling
from servebench.settings import AnalysisSettings

# Metrics whose share of the total gain ablation.csv attributes to each optimization level.
ABLATION_METRICS = ["latency_p50_ms", "latency_p99_ms"]


ABLATION_PREFIX = "ablation-"


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
        if record.summary is not None:
            summary = record.summary.to_dict()
            _flatten({k: v for k, v in summary.items() if k not in row}, "", flat)
            row.update(flat)
            row.update(run_metrics(record.summary))
        meta_flat: dict[str, Any] = {}
        _flatten(record.meta, "meta", meta_flat)
        row.update(meta_flat)
        rows.append(row)
    return pd.DataFrame(rows)


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
    per-run metric and its t-interval over repetitions (`ci_level`); the realized interarrival
    CV of the schedule beside the scenario's target."""
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
            "target_cv": mean_or_nan(_per_run_values(valid, "target_cv")),
            "realized_cv": mean_or_nan(_per_run_values(valid, "realized_cv")),
            "n_measured_min": float(_per_run_values(valid, "n_measured").min())
            if len(valid)
            else math.nan,
        }
        for metric in METRICS:
            values = _per_run_values(valid, metric.name).dropna().to_numpy()
            low, high = t_interval(values, settings.ci_level)
            row[metric.name] = mean_or_nan(values)
            # Every metric here is >= 0: the interval is cut at 0 (coverage is unchanged).
            low = max(low, 0.0) if math.isfinite(low) else low
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
        "target_cv",
        "realized_cv",
        "n_measured_min",
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
    "design",
    "test",
    "variant_mean",
    "reference_mean",
    "difference",
    "ratio",
    "change_percent",
    "on_log_scale",
    "ci_level",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "adj_ci_level",
    "adj_ci_low",
    "adj_ci_high",
    "n_requests_variant",
    "n_requests_reference",
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

    The paired model over repetitions (servebench.analysis.statistics.compare): the ratio
    (or, for metrics that can be 0, the difference) with its `ci_level` t-interval, the paired
    test's p-value, Holm within each metric's family, the interval at the adjusted level that
    the verdict quotes. For latency metrics Cliff's delta of the pooled per-request latencies
    describes how the distributions differ (an effect size, not a test).
    """
    rows = []
    if runs.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    valid = runs[runs["valid"].astype(bool)]
    for target in _ordered(runs["target"], ()):
        for scenario in _ordered(runs.loc[runs["target"] == target, "scenario"], scenarios):
            here = valid[(valid["target"] == target) & (valid["scenario"] == scenario)]
            present = runs[(runs["target"] == target) & (runs["scenario"] == scenario)]
            for variant in _ordered(present["variant"], variants):
                if variant == reference:
                    continue
                for metric in METRICS:
                    rows.append(
                        _comparison_row(
                            target, scenario, variant, reference, metric, here, latencies, settings
                        )
                    )
    columns = [c for c in COMPARISON_COLUMNS if c not in ("verdict_class", "verdict")]
    table = pd.DataFrame(rows, columns=[*columns, "_comparison"])
    if table.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    # Holm within each metric's family (every target, scenario and variant of that metric).
    table["p_holm"] = math.nan
    for _, family in table.groupby("metric", sort=False):
        table.loc[family.index, "p_holm"] = holm(family["p_value"].to_numpy(dtype=float))
    classes, sentences = [], []
    for index, record in table.iterrows():
        comparison = record["_comparison"]
        level = adjusted_level(settings.alpha, record["p_value"], record["p_holm"])
        low, high = comparison.interval(level)
        table.loc[index, ["adj_ci_level", "adj_ci_low", "adj_ci_high"]] = [level, low, high]
        verdict_class, sentence = verdict(
            METRIC_BY_NAME[record["metric"]],
            record["variant"],
            record["reference"],
            {**record.to_dict(), "adj_ci_level": level, "adj_ci_low": low, "adj_ci_high": high},
            alpha=settings.alpha,
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
    runs: pd.DataFrame,
    latencies: dict[tuple[str, str, str], dict[str, np.ndarray]],
    settings: AnalysisSettings,
) -> dict[str, Any]:
    def by_repetition(name: str) -> dict[int, float]:
        rows = runs[runs["variant"] == name]
        return dict(
            zip(rows["repetition"].astype(int), _per_run_values(rows, metric.name), strict=True)
        )

    comparison = compare(by_repetition(variant), by_repetition(reference))
    low, high = comparison.interval(settings.ci_level)
    row: dict[str, Any] = {
        "target": target,
        "scenario": scenario,
        "variant": variant,
        "reference": reference,
        "metric": metric.name,
        "unit": metric.unit,
        "better": metric.better,
        "n_reps_variant": comparison.n_variant,
        "n_reps_reference": comparison.n_reference,
        "design": comparison.design,
        "test": comparison.test,
        "variant_mean": comparison.variant_mean,
        "reference_mean": comparison.reference_mean,
        "difference": comparison.difference,
        "ratio": comparison.ratio,
        "change_percent": 100.0 * (comparison.ratio - 1.0)
        if math.isfinite(comparison.ratio)
        else math.nan,
        "on_log_scale": comparison.on_log_scale,
        "ci_level": settings.ci_level,
        "ci_low": low,
        "ci_high": high,
        "p_value": comparison.p_value,
        "adj_ci_level": math.nan,
        "adj_ci_low": math.nan,
        "adj_ci_high": math.nan,
        "n_requests_variant": math.nan,
        "n_requests_reference": math.nan,
        "cliffs_delta": math.nan,
        "cliffs_magnitude": "",
        "_comparison": comparison,
    }
    if metric.latency_kind is not None:
        x = latencies.get((target, variant, scenario), {}).get(metric.latency_kind)
        y = latencies.get((target, reference, scenario), {}).get(metric.latency_kind)
        if x is not None and y is not None and len(x) and len(y):
            delta = cliffs_delta(x, y)
            row.update(
                n_requests_variant=len(x),
                n_requests_reference=len(y),
                cliffs_delta=delta,
                cliffs_magnitude=cliffs_magnitude(delta),
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
        set(capacity.loc[capacity["saturation_rps"].notna(), "variant"]) if len(capacity) else set()
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

                def values(
                    variant: str, here: pd.DataFrame = here, name: str = metric_name
                ) -> dict[int, float]:
                    rows = here[here["variant"] == variant]
                    per_run = _per_run_values(rows, name)
                    return {
                        int(rep): float(value)
                        for rep, value in zip(rows["repetition"], per_run, strict=True)
                        if math.isfinite(value)
                    }

                rows += _ablation_rows(
                    target,
                    scenario,
                    metric.name,
                    metric.unit,
                    metric.better,
                    {name: values(name) for name in (reference, optimized)},
                    {level: values(variant) for level, variant in levels.items()},
                    levels,
                    reference,
                    optimized,
                    settings,
                )
    if len(capacity):
        for target in sorted(set(capacity["target"])):
            here = capacity[capacity["target"] == target].set_index("variant")
            for metric_name in ("saturation_rps", "capacity_rps"):

                def answer(variant: str, column: pd.Series = here[metric_name]) -> dict[int, float]:
                    value = column.get(variant, math.nan)
                    return {0: float(value)} if pd.notna(value) else {}

                rows += _ablation_rows(
                    target,
                    "calibration",
                    metric_name,
                    "req/s",
                    "higher",
                    {name: answer(name) for name in (reference, optimized)},
                    {level: answer(variant) for level, variant in levels.items()},
                    levels,
                    reference,
                    optimized,
                    settings,
                )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _ablation_rows(
    target: str,
    scenario: str,
    metric: str,
    unit: str,
    better: str,
    ends: dict[str, dict[int, float]],
    level_values: dict[str, dict[int, float]],
    levels: dict[str, str],
    reference: str,
    optimized: str,
    settings: AnalysisSettings,
) -> list[dict[str, Any]]:
    sign = 1.0 if better == "higher" else -1.0
    ref, opt = ends[reference], ends[optimized]
    ref_mean, opt_mean = mean_or_nan(ref.values()), mean_or_nan(opt.values())
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
            "level_value": mean_or_nan(values.values()),
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
        # The paired design: each repetition's share (its level, reference and optimized runs
        # ran the same schedule), with a t-interval over those repetitions.
        paired = sorted(set(values) & set(ref) & set(opt))
        per_repetition = [
            (values[r] - ref[r]) / (opt[r] - ref[r]) for r in paired if opt[r] != ref[r]
        ]
        if not row["note"] and len(per_repetition) >= 2:
            row["share_ci_low"], row["share_ci_high"] = t_interval(
                per_repetition, settings.ci_level
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
    "saturation_rps",
    "saturation_offered_rps",
    "saturation_from",
    "saturation_bracket_low_rps",
    "saturation_bracket_high_rps",
    "capacity_rps",
    "capacity_offered_rps",
    "capacity_bracket_low_rps",
    "capacity_bracket_high_rps",
    "capacity_confirmed",
    "capacity_requests",
    "capacity_unattainable",
    "slo_p99_ms",
    "unloaded_p50_ms",
    "unloaded_p99_ms",
    "saturation_vs_reference",
    "capacity_vs_reference",
    "runtime",
    "ceiling_texts_per_s",
    "ceiling_strategy",
    "ceiling_before_texts_per_s",
    "ceiling_after_texts_per_s",
    "model_stage_ceiling_texts_per_s",
    "serving_efficiency",
    "mg1_capacity_rps",
    "capacity_vs_mg1",
    "n_steps",
    "search_s",
    "note",
]


def add_ceilings(
    table: pd.DataFrame,
    bentos: dict[str, dict[str, Any]],
    calibrations: dict[str, dict[str, Any]],
    cores: int,
) -> pd.DataFrame:
    """The capacity table's references: each variant's runtime, that runtime's in-process
    ceiling on the server's cores (the model stage's best strategy, measured again right
    before and after the calibration's search where it ran: their mean is the ceiling, so
    that the serving efficiency, saturation throughput / ceiling, divides measurements of the
    same minutes; the model stage's alone otherwise), and the M/G/1 capacity at the SLO
    predicted from the variant's unloaded service times, with the measured capacity as a
    share of it."""
    for index, row in table.iterrows():
        record = bentos.get(row["variant"])
        if record is None:
            continue
        table.at[index, "runtime"] = record["settings"]["runtime"]
        capacity = calibrations.get(row["variant"]) or {}
        ceiling = inprocess_ceiling(Path(record["runtime_dir"]) / INPROCESS_BENCH, cores)
        if ceiling is not None:
            texts_per_s = ceiling.texts_per_s
            table.at[index, "model_stage_ceiling_texts_per_s"] = ceiling.texts_per_s
            table.at[index, "ceiling_strategy"] = ceiling.strategy
            beside = capacity.get("ceiling") or {}
            if beside.get("texts_per_s") is not None and beside.get("strategy") == ceiling.strategy:
                texts_per_s = float(beside["texts_per_s"])
                for when in ("before", "after"):
                    table.at[index, f"ceiling_{when}_texts_per_s"] = beside.get(
                        f"{when}_texts_per_s"
                    )
            table.at[index, "ceiling_texts_per_s"] = texts_per_s
            if pd.notna(row["saturation_rps"]):
                table.at[index, "serving_efficiency"] = row["saturation_rps"] / texts_per_s
        service_ms = np.array(capacity.get("unloaded_ms") or [], dtype=float)
        if len(service_ms):
            predicted = mg1_capacity_rps(service_ms, float(capacity["slo_p99_ms"]))
            table.at[index, "mg1_capacity_rps"] = predicted
            if predicted and pd.notna(row["capacity_rps"]):
                table.at[index, "capacity_vs_mg1"] = row["capacity_rps"] / predicted
    return table


def capacity_table(
    results_dir: str | Path,
    target: str,
    variants: Sequence[str],
    reference: str,
    problems: list[str] | None = None,
    cores: int = 1,
) -> pd.DataFrame:
    """capacity.csv: each variant's two answers of the calibration (saturation throughput and
    capacity at the SLO, as rates answered and offered, with their brackets), their ratios
    to the reference variant's, and their references (`add_ceilings`; `cores`: the server's)."""
    rows = []
    calibrations = {}
    for variant in variants:
        capacity, steps, found = read_calibration(results_dir, target, variant)
        if problems is not None:
            problems += found
        calibrations[variant] = capacity
        row: dict[str, Any] = {"target": target, "variant": variant, "note": ""}
        if capacity is not None:
            for key in (
                "saturation_rps",
                "saturation_offered_rps",
                "saturation_from",
                "capacity_rps",
                "capacity_offered_rps",
                "capacity_confirmed",
                "capacity_requests",
                "capacity_unattainable",
                "slo_p99_ms",
                "unloaded_p50_ms",
                "unloaded_p99_ms",
                "search_s",
            ):
                row[key] = capacity.get(key)
            for answer in ("saturation", "capacity"):
                low, high = (capacity.get(f"{answer}_bracket_rps") or [None, None])[:2]
                row[f"{answer}_bracket_low_rps"] = low
                row[f"{answer}_bracket_high_rps"] = high
            row["n_steps"] = capacity.get("steps_run")
            row["note"] = "; ".join(capacity.get("notes") or [])
        else:
            row["note"] = "not calibrated (no capacity.json)"
        rows.append(row)
    table = pd.DataFrame(rows, columns=CAPACITY_COLUMNS).astype(
        {"runtime": object, "ceiling_strategy": object}
    )
    for answer in ("saturation", "capacity"):
        column = f"{answer}_rps"
        table[column] = pd.to_numeric(table[column], errors="coerce")
        at_reference = table.loc[table["variant"] == reference, column]
        ref_value = float(at_reference.iloc[0]) if len(at_reference) else math.nan
        table[f"{answer}_vs_reference"] = (
            table[column] / ref_value if math.isfinite(ref_value) and ref_value > 0 else np.nan
        )
    return add_ceilings(table, bento_records(results_dir, variants), calibrations, cores)


def pareto_front(capacity_rps: Sequence[float], p50_ms: Sequence[float]) -> list[bool]:
    """Which points no other point beats on both (a higher capacity and a lower p50, one of
    them strictly); a point with a missing value is on no front."""
    points = list(zip(capacity_rps, p50_ms, strict=True))
    front = []
    for capacity, p50 in points:
        if not (math.isfinite(capacity) and math.isfinite(p50)):
            front.append(False)
            continue
        front.append(
            not any(
                other_capacity >= capacity
                and other_p50 <= p50
                and (other_capacity > capacity or other_p50 < p50)
                for other_capacity, other_p50 in points
                if math.isfinite(other_capacity) and math.isfinite(other_p50)
            )
        )
    return front


def tuning_table(results_dir: str | Path) -> pd.DataFrame:
    """tuning.csv of the tuning stage (every configuration it tried) with `pareto`: on the
    front of SLO capacity against p50 at the common rate (measured capacities only). Empty
    when the stage did not run."""
    path = Layout(results_dir).tuning_dir / TUNING
    if not path.is_file():
        return pd.DataFrame(columns=["trial", "configuration", "outcome", "pareto"])
    table = pd.read_csv(path)
    table["pareto"] = pareto_front(
        pd.to_numeric(table["capacity_rps"], errors="coerce").fillna(math.nan).tolist(),
        pd.to_numeric(table["common_p50_ms"], errors="coerce").fillna(math.nan).tolist(),
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


def build_tables(
    config: dict[str, Any], specs: Sequence[RunSpec], results_dir: str | Path
) -> dict[str, pd.DataFrame]:
    """Every table of results/tables/ from the results tree (missing files are listed in the
    `problems` table, never fatal)."""
    settings = AnalysisSettings.of(config)
    experiment = config["experiment"]
    reference = experiment["reference_variant"]
    variants = list(experiment["variants"])
    scenarios = list(experiment["scenarios"])
    # On the external target the variants are URLs: no ablation variant of `variants` ran.
    all_variants = (
        list(config["variants"]) if config["deploy"]["target"] != "external" else variants
    )
    target = config["deploy"]["target"]
    problems: list[str] = []
    records = load_runs(specs, results_dir)
    for record in records:
        if record.status == "missing":
            problems.append(f"{record.path}: not run (no summary.json)")
        elif record.valid:
            absent = [name for name in record.missing_files if name != SUMMARY]
            if absent:
                problems.append(f"{record.path}: missing {', '.join(absent)}")
    runs = runs_table(records)
    latencies = pooled_latencies(records, problems)
    cores = len(config["cpus"]["server"]) if isinstance(config["cpus"]["server"], list) else 1
    capacity = capacity_table(results_dir, target, variants, reference, problems, cores)
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
        "tuning": tuning_table(results_dir),
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


def write_study_tables(
    config: dict[str, Any], out_dir: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Every table of the study from the results tree into results/tables/ (or `out_dir`)."""
    layout = Layout.of(config)
    tables = build_tables(config, run_matrix(config), layout.results_dir)
    write_tables(tables, out_dir or layout.tables_dir)
    return tables
