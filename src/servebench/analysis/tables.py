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
    load_runs,
    pooled_latencies,
    read_calibration,
    run_metrics,
)
from servebench.analysis.statistics import (
    METRIC_BY_NAME,
    METRICS,
    Metric,
    _ratio_or_nan,
    bootstrap_ci,
    bootstrap_distribution,
    cliffs_magnitude,
    holm,
    mann_whitney,
    mean_or_nan,
    percentile_interval,
    repetition_test,
    two_sample_bootstrap,
    verdict,
)
from servebench.layout import SUMMARY, Layout
from servebench.matrix import RunSpec, derived_seed, run_matrix
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
    all_variants = list(config["variants"])
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


def write_study_tables(
    config: dict[str, Any], out_dir: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Every table of the study from the results tree into results/tables/ (or `out_dir`)."""
    layout = Layout.of(config)
    tables = build_tables(config, run_matrix(config), layout.results_dir)
    write_tables(tables, out_dir or layout.tables_dir)
    return tables
