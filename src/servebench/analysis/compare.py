"""Two studies compared: before and after a change, two machines, two model versions.

    servebench compare results-before results-after --out compare/

Each results folder is read as the study's own analysis reads it (servebench.analysis.results:
runs/<target>/<variant>/<scenario>/rep<r>/ with summary.json, meta.json, requests.parquet), so
nothing but the results tree is needed, not the configuration that made it. Every (variant,
scenario) that both studies ran is compared, B against A (the reference), on every per-run
metric of the study's own comparison, with the same statistics
(servebench.analysis.statistics.compare): a repetition is the unit; two runs are a pair when
their schedules match, i.e. they ran with the same seed (meta.json's `seed`: the same master
seed, scenario and repetition give the same seed) at the same offered rate (`rate_rps`), and
then the paired t-test on log ratios is used; runs whose seeds or rates differ are compared
with Welch's unpaired test on the logs. The test
is named in every row. Holm corrects the p-values within each metric's family (every variant
and scenario of that metric), and each verdict quotes the interval at the matching adjusted
level, as in the study's comparison.csv.

Runs are matched on their target too when both studies ran the same one; when each study ran
a single, different target (local before, k3s after), its runs are matched across them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.analysis.results import RunRecord, load_runs, pooled_latencies
from servebench.analysis.statistics import METRICS
from servebench.analysis.tables import comparison_table, runs_table, summary_table, write_tables
from servebench.layout import META, SUMMARY, Layout
from servebench.matrix import RunSpec
from servebench.settings import AnalysisSettings

# Files of a comparison's folder.
COMPARISON_CSV = "comparison.csv"
SUMMARY_CSV = "summary.csv"
RUNS_CSV = "runs.csv"
UNMATCHED_CSV = "unmatched.csv"
FIGURE_NAME = "comparison"
HTML_NAME = "comparison.html"
# The metrics of the figure (ratios B / A with their intervals).
FIGURE_METRICS = ("latency_p50_ms", "latency_p99_ms", "service_p99_ms", "throughput_rps")
VERDICT_COLORS = {
    "better": "#009E73",
    "worse": "#D55E00",
    "no difference": "#555555",
    "not tested": "#E69F00",
}


class CompareError(ValueError):
    """A folder that is not a study's results folder, or two studies with nothing in common."""


@dataclass
class Study:
    """One results folder: its label, its runs as found on disk."""

    label: str
    results_dir: Path
    records: list[RunRecord] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        return sorted({record.spec.target for record in self.records})


def discover_runs(results_dir: str | Path) -> list[RunSpec]:
    """Every run folder of a results tree (runs/<target>/<variant>/<scenario>/rep<r>/ holding
    a summary.json or a meta.json), in a stable order."""
    runs_dir = Layout(results_dir).path("runs")
    specs = []
    for folder in sorted(runs_dir.glob("*/*/*/rep*")):
        repetition = folder.name.removeprefix("rep")
        if not repetition.isdigit() or not folder.is_dir():
            continue
        if not ((folder / SUMMARY).is_file() or (folder / META).is_file()):
            continue
        target, variant, scenario = folder.relative_to(runs_dir).parts[:3]
        specs.append(RunSpec(target, variant, scenario, int(repetition)))
    return specs


def read_study(results_dir: str | Path, label: str) -> Study:
    """A results folder as a Study; CompareError when it holds no run."""
    path = Path(results_dir)
    if not path.is_dir():
        raise CompareError(f"{path}: no such folder")
    specs = discover_runs(path)
    if not specs:
        raise CompareError(
            f"{path}: no runs (a study's results folder holds "
            "runs/<target>/<variant>/<scenario>/rep<r>/summary.json)"
        )
    return Study(label, path, load_runs(specs, path))


def study_labels(a: Path, b: Path, given: Sequence[str] | None = None) -> tuple[str, str]:
    """The names of the two studies in tables and sentences: given ones, else the folders'
    names, else A and B (when the names coincide, e.g. two folders called results)."""
    if given:
        if len(given) != 2 or given[0] == given[1] or not all(given):
            raise CompareError(f"--names needs two different names, not {list(given)}")
        return given[0], given[1]
    names = (Path(a).resolve().name, Path(b).resolve().name)
    return names if names[0] != names[1] else ("A", "B")


def target_pairs(a: Study, b: Study) -> list[tuple[str, str]]:
    """(target of A, target of B) whose runs are compared: the targets both ran, else the one
    target of each when each ran only one."""
    common = sorted(set(a.targets) & set(b.targets))
    if common:
        return [(target, target) for target in common]
    if len(a.targets) == 1 and len(b.targets) == 1:
        return [(a.targets[0], b.targets[0])]
    return []


def _pair_keys(runs: pd.DataFrame, offset: int) -> pd.Series:
    """The key runs are paired on: the run's schedule, i.e. its seed and its offered rate
    (meta.json), so that two runs pair exactly when their schedules match. The same seed at
    another rate (two studies that calibrated to different capacities) is another schedule; a
    run without a recorded seed gets a key of its own (unpaired)."""
    missing = pd.Series(np.nan, index=runs.index)
    seeds = pd.to_numeric(runs.get("meta_seed", missing), "coerce")
    rates = pd.to_numeric(runs.get("meta_rate_rps", missing), "coerce")
    keys = pd.Series(-(offset + 2 * np.arange(len(runs)) + 1), index=runs.index, dtype="int64")
    for index in runs.index[seeds.notna()]:
        rate = rates[index]
        schedule = f"{int(seeds[index])}@{rate:.6g}" if pd.notna(rate) else f"{int(seeds[index])}"
        digest = hashlib.sha256(schedule.encode()).digest()
        keys[index] = int.from_bytes(digest[:7], "big")  # non-negative, fits int64
    return keys


@dataclass
class Comparison:
    """What `compare_studies` found: the tables, and the studies."""

    a: Study
    b: Study
    comparison: pd.DataFrame
    summary: pd.DataFrame
    runs: pd.DataFrame
    unmatched: pd.DataFrame
    settings: AnalysisSettings


def compare_studies(a: Study, b: Study, settings: AnalysisSettings) -> Comparison:
    """B against A on every (target, variant, scenario) both ran (see the module's doc)."""
    pairs = target_pairs(a, b)
    if not pairs:
        raise CompareError(
            f"no target in common: {a.label} ran {', '.join(a.targets)}, {b.label} ran "
            f"{', '.join(b.targets)}"
        )
    runs_a, runs_b = runs_table(a.records), runs_table(b.records)
    runs_a.insert(0, "study", a.label)
    runs_b.insert(0, "study", b.label)
    runs_a["pair_key"] = _pair_keys(runs_a, 0)
    runs_b["pair_key"] = _pair_keys(runs_b, 1)
    # The group a row is compared within: "<variant>" (or "<target A>-><target B>/<variant>"
    # when the targets differ, or when several are compared).
    groups_a, groups_b = [], []
    matched_keys: set[tuple[str, str, str, str]] = set()
    for target_a, target_b in pairs:
        keys_a = {
            (v, s) for v, s in zip(*_cols(runs_a, target_a, "variant", "scenario"), strict=True)
        }
        keys_b = {
            (v, s) for v, s in zip(*_cols(runs_b, target_b, "variant", "scenario"), strict=True)
        }
        for variant, scenario in sorted(keys_a & keys_b):
            group = variant if len(pairs) == 1 and target_a == target_b else (
                f"{variant} ({target_a})" if target_a == target_b
                else f"{variant} ({target_a} -> {target_b})"
            )  # fmt: skip
            groups_a.append((target_a, variant, scenario, group))
            groups_b.append((target_b, variant, scenario, group))
            matched_keys.add((a.label, target_a, variant, scenario))
            matched_keys.add((b.label, target_b, variant, scenario))
    if not groups_a:
        raise CompareError(
            f"the studies share no (variant, scenario): {a.label} ran "
            f"{_ran(runs_a)}; {b.label} ran {_ran(runs_b)}"
        )
    combined = pd.concat(
        [_grouped(runs_a, groups_a), _grouped(runs_b, groups_b)], ignore_index=True
    )
    # statistics.compare pairs values by their key: here the seed, not the repetition number.
    stats_runs = combined.rename(columns={"repetition": "study_repetition"}).assign(
        target=combined["group"],
        variant=combined["study"],
        repetition=combined["pair_key"],
    )
    latencies = _latencies(a, groups_a) | _latencies(b, groups_b)
    table = comparison_table(
        stats_runs, latencies, settings, a.label, [a.label, b.label], _order(combined)
    )
    table = table.rename(
        columns={"target": "variant_group", "variant": "study", "reference": "reference_study"}
    )
    table.insert(0, "variant", table["variant_group"].map(_group_variant(groups_a)))
    table.insert(1, "target_a", table["variant_group"].map(_group_target(groups_a)))
    table.insert(2, "target_b", table["variant_group"].map(_group_target(groups_b)))
    table.insert(3, "n_pairs", _pair_counts(stats_runs, table, a.label, b.label))
    summaries = []
    for study_runs, groups in ((runs_a, groups_a), (runs_b, groups_b)):
        here = _grouped(study_runs, groups)
        if len(here):
            summary = summary_table(here, settings, (), _order(here))
            summary.insert(0, "study", here["study"].iloc[0])
            summaries.append(summary)
    all_runs = pd.concat([runs_a, runs_b], ignore_index=True)
    unmatched = all_runs[
        [
            (study, target, variant, scenario) not in matched_keys
            for study, target, variant, scenario in zip(
                all_runs["study"],
                all_runs["target"],
                all_runs["variant"],
                all_runs["scenario"],
                strict=True,
            )
        ]
    ][["study", "target", "variant", "scenario", "repetition", "status"]]
    return Comparison(
        a,
        b,
        table,
        pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(),
        all_runs,
        unmatched.reset_index(drop=True),
        settings,
    )


def _cols(runs: pd.DataFrame, target: str, *names: str) -> list[pd.Series]:
    here = runs[runs["target"] == target]
    return [here[name] for name in names]


def _ran(runs: pd.DataFrame) -> str:
    pairs = sorted(set(zip(runs["variant"], runs["scenario"], strict=True)))
    return ", ".join(f"{variant}/{scenario}" for variant, scenario in pairs) or "nothing"


def _grouped(runs: pd.DataFrame, groups: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """The runs of the matched (target, variant, scenario), with their comparison group."""
    lookup = {(t, v, s): g for t, v, s, g in groups}
    keys = list(zip(runs["target"], runs["variant"], runs["scenario"], strict=True))
    keep = [key in lookup for key in keys]
    here = runs[keep].copy()
    here["group"] = [lookup[key] for key, kept in zip(keys, keep, strict=True) if kept]
    return here


def _order(runs: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(runs["scenario"]))


def _group_variant(groups: list[tuple[str, str, str, str]]) -> dict[str, str]:
    return {group: variant for _, variant, _, group in groups}


def _group_target(groups: list[tuple[str, str, str, str]]) -> dict[str, str]:
    return {group: target for target, _, _, group in groups}


def _latencies(
    study: Study, groups: list[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """Pooled request latencies per (group, study, scenario): Cliff's delta of each row."""
    lookup = {(t, v, s): g for t, v, s, g in groups}
    pooled = pooled_latencies([r for r in study.records if r.key in lookup])
    return {(lookup[key], study.label, key[2]): values for key, values in pooled.items()}


def _pair_counts(runs: pd.DataFrame, table: pd.DataFrame, a: str, b: str) -> list[int]:
    """Valid runs of A and B with the same seed, per row (0: the unpaired test)."""
    valid = runs[runs["valid"].astype(bool)]
    counts = []
    for group, scenario in zip(table["variant_group"], table["scenario"], strict=True):
        here = valid[(valid["target"] == group) & (valid["scenario"] == scenario)]
        keys = [set(here.loc[here["variant"] == label, "repetition"]) for label in (a, b)]
        counts.append(len(keys[0] & keys[1]))
    return counts


def comparison_figure(
    comparison: pd.DataFrame, labels: tuple[str, str], out_base: Path
) -> list[Path]:
    """One panel per headline metric: the ratio B / A of every (variant, scenario), with its
    Holm-adjusted interval, coloured by the verdict; a line at 1x (no change)."""
    from matplotlib import ticker

    from servebench.analysis.figures import COLUMN_WIDTH_IN, STYLE, _pyplot, placeholder, save

    rows = comparison[comparison["metric"].isin(FIGURE_METRICS)]
    rows = rows[rows["on_log_scale"].astype(bool) & np.isfinite(rows["ratio"].astype(float))]
    if rows.empty:
        return placeholder(
            out_base, "B / A", "no metric could be compared (no valid runs in common)"
        )
    plt = _pyplot()
    metrics = [m for m in FIGURE_METRICS if m in set(rows["metric"])]
    items = list(dict.fromkeys(zip(rows["variant_group"], rows["scenario"], strict=True)))
    height = 0.9 + 0.28 * len(items)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(max(COLUMN_WIDTH_IN, 1.75 * len(metrics)), height),
            sharey=True,
            squeeze=False,
        )
        for axis, metric in zip(axes[0], metrics, strict=True):
            here = rows[rows["metric"] == metric].set_index(["variant_group", "scenario"])
            for y, item in enumerate(items):
                if item not in here.index:
                    continue
                row = here.loc[item]
                low, high = float(row["adj_ci_low"]), float(row["adj_ci_high"])
                ratio = float(row["ratio"])
                color = VERDICT_COLORS.get(str(row["verdict_class"]), "#555555")
                if math.isfinite(low) and math.isfinite(high) and low > 0:
                    axis.plot([low, high], [y, y], color=color, linewidth=1.4)
                axis.plot([ratio], [y], "o", color=color, markersize=4)
            axis.axvline(1.0, color="#000000", linewidth=0.8)
            # A linear axis with a few plain ticks: ratios of one study to another are near 1.
            axis.xaxis.set_major_locator(ticker.MaxNLocator(4))
            axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:.3g}x"))
            label = next(m.label for m in METRICS if m.name == metric)
            axis.set_title(label)
            axis.set_xlabel(f"{labels[1]} / {labels[0]}")
            axis.grid(True, axis="x")
        axes[0][0].set_yticks(range(len(items)))
        axes[0][0].set_yticklabels([f"{group}\n{scenario}" for group, scenario in items])
        axes[0][0].set_ylim(-0.6, len(items) - 0.4)
        axes[0][0].invert_yaxis()
        handles = [
            plt.Line2D([], [], color=color, marker="o", linestyle="-", label=name)
            for name, color in VERDICT_COLORS.items()
            if name in set(rows["verdict_class"])
        ]
        figure.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncols=len(handles),
            frameon=False,
        )
        return save(figure, out_base)


def write_comparison(result: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """comparison.csv, summary.csv, runs.csv, unmatched.csv and comparison.{png,pdf} in
    `out_dir`; returns their paths."""
    out = Path(out_dir)
    paths = write_tables(
        {
            COMPARISON_CSV.removesuffix(".csv"): result.comparison,
            SUMMARY_CSV.removesuffix(".csv"): result.summary,
            RUNS_CSV.removesuffix(".csv"): result.runs,
            UNMATCHED_CSV.removesuffix(".csv"): result.unmatched,
        },
        out,
    )
    figures = comparison_figure(
        result.comparison, (result.a.label, result.b.label), out / FIGURE_NAME
    )
    for path in figures:
        paths[path.name] = path
    return paths


def study_facts(study: Study) -> dict[str, Any]:
    """Where and with what a study ran, from its runs' meta.json: machines, commits, config
    hashes, targets, seeds (for the page's header)."""

    def values(key: str) -> list[str]:
        found = []
        for record in study.records:
            value: Any = record.meta
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value not in (None, ""):
                found.append(str(value))
        return sorted(set(found))

    return {
        "label": study.label,
        "folder": str(study.results_dir),
        "runs": len(study.records),
        "valid_runs": sum(record.valid for record in study.records),
        "targets": study.targets,
        "cpus": values("cpu.model"),
        "git_commits": values("git_commit"),
        "config_hashes": [value[:12] for value in values("config_hash")],
        "bento_tags": values("bento_tag"),
    }
