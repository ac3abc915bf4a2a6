"""results/report.html: one self-contained page (images and tables embedded, no network).

The page is rendered from the tables (results/tables/*.csv), the figures
(results/figures/*.png), the model's and the machine's provenance and the config, with the
Jinja2 template report/report.html.j2. Titles and categories of the tables and figures are in
report/items.yaml and their captions in report/captions/*.rst, which Snakemake's own `--report`
uses too, so both reports say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from servebench.analysis.results import bento_records
from servebench.fault_kinds import PROBES_ONLY
from servebench.layout import (
    FAULTS,
    RESILIENCE_TABLE,
    TABLE_NAMES,
    TUNED,
    Layout,
    figure_names,
    resilience_figure_names,
)
from servebench.matrix import resilience_fault_names, resilience_matrix, run_seed
from servebench.provenance import stable_hash
from servebench.report.items import REPORT_DIR, caption_path, load_items
from servebench.settings import K3sTarget, batching_dispatcher

TEMPLATE = "report.html.j2"
# What the report says of the model and the server's cores on the external target.
EXTERNAL_MODEL = (
    "served by the external servers (deploy.external.urls); this workflow neither prepared nor "
    "inspected it"
)
EXTERNAL_SERVER_CORES = "none here (deploy.target external: the servers run elsewhere)"


DASH = "–"


VERDICT_CLASSES = {
    "better": "better",
    "worse": "worse",
    "no difference": "same",
    "not tested": "untested",
}


HEADLINE_METRICS = ("latency_p50_ms", "latency_p99_ms", "throughput_rps", "error_rate")


def fmt(value: Any, significant: int = 3) -> str:
    """A number for people: ~3 significant digits, thousands separators, '–' for missing."""
    if value is None:
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return DASH
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude >= 10**significant:
        return f"{number:,.0f}"
    if magnitude < 1e-3:
        return f"{number:.2g}"
    decimals = max(significant - 1 - int(math.floor(math.log10(magnitude))), 0)
    return f"{number:,.{decimals}f}"


def fmt_p(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(number):
        return DASH
    return "<1e-300" if number == 0 else f"{number:.2g}"


def fmt_percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(number) else f"{100 * number:.3g}%"


def with_ci(row: dict[str, Any] | pd.Series, name: str, percent: bool = False) -> str:
    one = fmt_percent if percent else fmt
    value = one(row.get(name))
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if low is None or high is None or not (_finite(low) and _finite(high)):
        return value
    return f"{value} [{one(low)}, {one(high)}]"


def _is_true(value: Any) -> bool:
    """True for True, numpy True and "True" (a CSV round trip), False for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value).strip().lower() == "true"


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass
class HtmlTable:
    """Rows of (text, css class) cells; rendered (and escaped) by the template."""

    columns: list[str]
    rows: list[list[tuple[str, str]]] = field(default_factory=list)
    note: str = ""

    def add(self, cells: Sequence[Any]) -> None:
        row = []
        for cell in cells:
            if isinstance(cell, tuple):
                row.append((str(cell[0]), str(cell[1])))
            else:
                row.append((fmt(cell), ""))
        self.rows.append(row)


def frame_table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> HtmlTable:
    """A DataFrame as an HtmlTable (numbers formatted)."""
    columns = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    table = HtmlTable(list(columns))
    for record in frame[columns].to_dict("records"):
        table.add([_cell(record[c]) for c in columns])
    return table


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return (DASH, "")
    if value is None or (isinstance(value, str) and value == ""):
        return (DASH, "")
    return value


def rst_to_html(text: str) -> str:
    """A caption (reStructuredText) as an HTML fragment."""
    from docutils.core import publish_parts

    parts = publish_parts(
        text,
        writer="html5",
        settings_overrides={"report_level": 5, "halt_level": 5, "embed_stylesheet": False},
    )
    return parts["fragment"]


def caption_html(report_dir: Path, name: str) -> str:
    path = caption_path(report_dir, name)
    if not path.is_file():
        return ""
    return rst_to_html(path.read_text(encoding="utf-8"))


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not Path(path).is_file():
        return {}
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_table(tables_dir: Path, name: str) -> pd.DataFrame:
    path = tables_dir / f"{name}.csv"
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


@dataclass
class ReportInputs:
    """Where the report reads from."""

    results_dir: Path
    tables_dir: Path
    figures_dir: Path
    environment_json: Path | None = None
    model_dir: Path | None = None  # results/model/<model name>
    token_summary_json: Path | None = None
    runtimes: list[str] = field(default_factory=list)
    status_json: Path | None = None

    @classmethod
    def of(cls, layout: Layout, model_name: str, runtimes: Sequence[str]) -> ReportInputs:
        return cls(
            results_dir=layout.results_dir,
            tables_dir=layout.tables_dir,
            figures_dir=layout.figures_dir,
            environment_json=layout.environment_json,
            model_dir=layout.model_dir(model_name),
            token_summary_json=layout.token_summary_json,
            runtimes=list(runtimes),
            status_json=layout.status_json,
        )


def _figure(
    figures_dir: Path,
    name: str,
    title: str,
    caption: str,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    png = figures_dir / f"{name}.png"
    return {
        "id": name,
        "title": title,
        "caption": caption,
        "src": data_uri(png, "image/png") if png.is_file() else None,
        "missing": None if png.is_file() else f"{png} was not found",
        "notes": manifest.get(name, {}).get("notes", []),
        "pdf": f"figures/{name}.pdf",
    }


def figures_context(
    config: dict[str, Any], figures_dir: Path, report_dir: Path
) -> dict[str, dict[str, Any]]:
    """Every figure of the config: {figure id: title, caption HTML, embedded PNG, notes}."""
    items = load_items(report_dir)["figures"]
    manifest = _read_json(figures_dir / "manifest.json")
    scenarios = config["experiment"]["scenarios"]
    result = {}
    for name in figure_names(config["experiment"]["scenarios"]):
        base = name
        scenario = None
        for key, item in items.items():
            if item.get("per_scenario") and name.startswith(f"{key}_"):
                candidate = name[len(key) + 1 :]
                if candidate in scenarios:
                    base, scenario = key, candidate
        item = items.get(base, {"title": name, "caption": base})
        title = item["title"] + (f": scenario {scenario}" if scenario else "")
        result[name] = _figure(
            figures_dir, name, title, caption_html(report_dir, item["caption"]), manifest
        )
    return result


def _table_section(report_dir: Path, items: dict[str, Any], name: str) -> dict[str, str]:
    item = items["tables"][name]
    return {"title": item["title"], "caption": caption_html(report_dir, item["caption"])}


def summary_html_table(summary: pd.DataFrame, ci_level: float) -> HtmlTable:
    percent = f"{100 * ci_level:.0f}%"
    table = HtmlTable(
        [
            "scenario",
            "variant",
            "valid reps",
            "fewest requests in a run",
            "realized CV (target)",
            "min / mean / max ms",
            f"p50 ms [{percent} t-CI]",
            f"p90 ms [{percent} t-CI]",
            f"p99 ms [{percent} t-CI]",
            f"service p99 ms [{percent} t-CI]",
            "throughput req/s",
            "failure rate",
            "error rate",
            "rejection rate",
        ]
    )
    for _, row in summary.iterrows():
        table.add(
            [
                row["scenario"],
                row["variant"],
                f"{int(row['n_repetitions'])} of {int(row['n_runs'])}",
                (fmt(row.get("n_measured_min")), "num"),
                (f"{fmt(row.get('realized_cv'))} ({fmt(row.get('target_cv'))})", "num"),
                (
                    f"{fmt(row.get('latency_min_ms'))} / {fmt(row.get('latency_mean_ms'))} / "
                    f"{fmt(row.get('latency_max_ms'))}",
                    "num",
                ),
                (with_ci(row, "latency_p50_ms"), "num"),
                (with_ci(row, "latency_p90_ms"), "num"),
                (with_ci(row, "latency_p99_ms"), "num"),
                (with_ci(row, "service_p99_ms"), "num"),
                (with_ci(row, "throughput_rps"), "num"),
                (with_ci(row, "failure_rate", percent=True), "num"),
                (with_ci(row, "error_rate", percent=True), "num"),
                (with_ci(row, "rejection_rate", percent=True), "num"),
            ]
        )
    return table


COMPARISON_TAIL_HEADERS = ("Holm p", "Cliff's δ (per request)", "verdict")


def comparison_value_cells(row: pd.Series, test: Any) -> list[Any]:
    """The cells of one comparison row after its labels: both means, the ratio (or difference)
    with its t-interval, `test`, Holm's p, Cliff's delta, the verdict."""
    on_log = _is_true(row["on_log_scale"])
    estimate = fmt(row["ratio"]) + "x" if on_log else f"{fmt(row['difference'])}"
    if _finite(row["ci_low"]):
        suffix = "x" if on_log else ""
        estimate += f" [{fmt(row['ci_low'])}{suffix}, {fmt(row['ci_high'])}{suffix}]"
    delta = DASH
    if _finite(row["cliffs_delta"]):
        delta = f"{row['cliffs_delta']:+.2f} ({row['cliffs_magnitude']})"
    unit = "" if row["unit"] == "fraction" else f" {row['unit']}"
    one = fmt_percent if row["unit"] == "fraction" else fmt
    return [
        (f"{one(row['reference_mean'])}{unit}", "num"),
        (f"{one(row['variant_mean'])}{unit}", "num"),
        (estimate, "num"),
        test,
        (fmt_p(row["p_holm"]), "num"),
        (delta, "num"),
        (row["verdict_class"], VERDICT_CLASSES.get(row["verdict_class"], "")),
    ]


def comparison_rows_table(
    comparison: pd.DataFrame,
    metrics: Sequence[str] | None,
    headers: Sequence[str],
    labels: Callable[[pd.Series], list[Any]],
    test: Callable[[pd.Series], Any],
) -> HtmlTable:
    """A comparison table (the study's, or `servebench compare`'s): per row of `metrics` (all:
    None) its `labels`, then comparison_value_cells with its `test` cell. `headers` name the
    labels, both means, the estimate and the test; the last three columns are common."""
    table = HtmlTable([*headers, *COMPARISON_TAIL_HEADERS])
    rows = comparison if metrics is None else comparison[comparison["metric"].isin(metrics)]
    for _, row in rows.iterrows():
        table.add(labels(row) + comparison_value_cells(row, test(row)))
    return table


def comparison_html_table(
    comparison: pd.DataFrame, metrics: Sequence[str] | None, ci_level: float
) -> HtmlTable:
    headers = [
        "scenario",
        "variant",
        "metric",
        "reference",
        "variant value",
        f"ratio or difference [{100 * ci_level:.0f}% t-CI over repetitions]",
        "test",
    ]
    return comparison_rows_table(
        comparison,
        metrics,
        headers,
        lambda row: [row["scenario"], row["variant"], row["metric"]],
        lambda row: _cell(row["test"]),
    )


def key_results(
    summary: pd.DataFrame, comparison: pd.DataFrame, scenarios: Sequence[str], reference: str
) -> list[dict[str, Any]]:
    """Per scenario: the headline numbers of every variant and the verdicts on them."""
    result = []
    for scenario in scenarios:
        here = summary[summary["scenario"] == scenario] if len(summary) else summary
        verdicts = []
        if len(comparison):
            rows = comparison[
                (comparison["scenario"] == scenario)
                & comparison["metric"].isin(HEADLINE_METRICS[:3])
            ]
            verdicts = [
                {"text": row["verdict"], "css": VERDICT_CLASSES.get(row["verdict_class"], "")}
                for _, row in rows.iterrows()
            ]
        lines = []
        for _, row in here.iterrows():
            lines.append(
                {
                    "variant": row["variant"],
                    "reference": row["variant"] == reference,
                    "reps": int(row["n_repetitions"]),
                    "p50": with_ci(row, "latency_p50_ms"),
                    "p99": with_ci(row, "latency_p99_ms"),
                    "throughput": with_ci(row, "throughput_rps"),
                    "errors": with_ci(row, "error_rate", percent=True),
                }
            )
        result.append({"scenario": scenario, "rows": lines, "verdicts": verdicts})
    return result


def setup_context(
    config: dict[str, Any], inputs: ReportInputs, runs: pd.DataFrame
) -> dict[str, Any]:
    """Hardware, software, model, pinning and seeds."""
    environment = _read_json(inputs.environment_json)
    cpu = environment.get("cpu") or {}
    memory = environment.get("memory_bytes")
    hardware = [
        ("CPU", cpu.get("model", DASH)),
        ("logical cores", fmt(cpu.get("logical_cores"))),
        ("ISA flags that matter", ", ".join(cpu.get("isa_flags") or []) or DASH),
        ("memory", f"{memory / 2**30:.1f} GiB" if memory else DASH),
        ("platform", environment.get("platform", DASH)),
        ("server cores", ", ".join(map(str, config["cpus"]["server"]))),
        ("load generator cores", ", ".join(map(str, config["cpus"]["loadgen"]))),
        ("deployment target", config["deploy"]["target"]),
    ]
    packages = environment.get("packages") or {}
    software = [("python", environment.get("python", DASH))] + [
        (name, version or "not installed") for name, version in packages.items()
    ]
    model_rows: list[tuple[str, str]] = []
    runtimes = []
    provenance: dict[str, Any] = {}
    if inputs.model_dir is not None:
        for runtime in inputs.runtimes:
            info = _read_json(inputs.model_dir / runtime / "provenance.json")
            fidelity = _read_json(inputs.model_dir / runtime / "fidelity.json")
            if info and not provenance:
                provenance = info
            if info or fidelity:
                runtimes.append(
                    {
                        "runtime": runtime,
                        "size": fmt((info.get("size_on_disk_bytes") or math.nan) / 2**20) + " MiB",
                        "agreement": fmt_percent(fidelity.get("label_agreement")),
                        "max_diff": fmt(fidelity.get("max_abs_prob_diff")),
                        "passed": fmt(fidelity.get("passed")) if fidelity else DASH,
                        "accuracy": fmt(fidelity.get("accuracy"))
                        if fidelity.get("accuracy") is not None
                        else fidelity.get("accuracy_note", DASH),
                    }
                )
    weights = provenance.get("weights")
    meta_weights = sorted(set(runs.get("meta_weights", pd.Series(dtype=str)).dropna().astype(str)))
    if weights is None and meta_weights:
        weights = meta_weights[0]
    model_rows = [
        ("model", provenance.get("model_name") or config["model"]["id"]),
        ("requested model id", config["model"]["id"]),
        ("source", provenance.get("source", DASH)),
        ("weights", weights or DASH),
        ("parameters", fmt(provenance.get("num_parameters"))),
        ("max length (tokens)", fmt(provenance.get("max_length"))),
    ]
    if provenance.get("resolution_reason"):
        model_rows.append(("why this model", provenance["resolution_reason"]))
    if config["deploy"]["target"] == "external":  # nothing of this project's model is served
        model_rows = [("model", EXTERNAL_MODEL)]
        hardware = [
            (key, EXTERNAL_SERVER_CORES if key == "server cores" else value)
            for key, value in hardware
        ]
    commits = sorted(set(runs.get("meta_git_commit", pd.Series(dtype=str)).dropna().astype(str)))
    hashes = sorted(set(runs.get("meta_config_hash", pd.Series(dtype=str)).dropna().astype(str)))
    seeds = []
    for scenario in config["experiment"]["scenarios"]:
        repetitions = config["scenarios"][scenario]["repetitions"]
        for repetition in range(repetitions):
            seeds.append((scenario, repetition, run_seed(config, scenario, repetition)))
    return {
        "hardware": hardware,
        "software": software,
        "model": model_rows,
        "runtimes": runtimes,
        "synthetic": weights == "synthetic" or "synthetic" in meta_weights,
        "synthetic_reason": provenance.get("resolution_reason", ""),
        "git_commit": environment.get("git_commit") or (commits[0] if commits else DASH),
        "run_commits": commits,
        "run_config_hashes": hashes,
        "master_seed": config["seed"],
        "seeds": seeds,
    }


def variants_table(config: dict[str, Any], results_dir: Path | None = None) -> HtmlTable:
    """Each variant as served: its Bento record's settings (the tuned variant's come from the
    tuning stage), the configuration's where no Bento was built."""
    if config["deploy"]["target"] == "external":  # a variant is a name and a URL there
        table = HtmlTable(["variant", "server (deploy.external.urls)"])
        for name in config["experiment"]["variants"]:
            table.add([name, config["deploy"]["external"]["urls"][name]])
        return table
    on_k3s = config["deploy"]["target"] == "k3s"
    columns = [
        "variant",
        "runtime",
        "batching",
        "max batch / max latency",
        "sub-batch",
        "workers",
        "threads/worker",
        "gc.freeze",
        "request telemetry",
    ]
    # On a cluster, replicas and the PDB are variant axes too (variants.<name>.k3s).
    table = HtmlTable(columns + (["replicas", "PDB"] if on_k3s else []))
    served = bento_records(results_dir, config["experiment"]["variants"]) if results_dir else {}
    for name in config["experiment"]["variants"]:
        variant = served[name]["settings"] if name in served else config["variants"][name]
        batching = variant.get("batching") or {}
        dispatcher = batching_dispatcher(batching)
        row = [
            name,
            variant["runtime"],
            dispatcher,
            {
                "off": DASH,
                "greedy": f"{batching['max_batch_size']} / no wait",
                "adaptive": f"{batching['max_batch_size']} / {batching['max_latency_ms']} ms",
            }[dispatcher],
            variant["sub_batch_size"] or "off",
            variant["workers"],
            variant["threads_per_worker"] or "runtime default",
            bool(variant["gc_freeze"]),
            bool(variant.get("request_telemetry", True)),
        ]
        if on_k3s:
            settings = K3sTarget.of(config, name)
            pdb = settings.pdb_min_available
            row += [
                settings.replicas,
                "maxUnavailable 1" if pdb is None else f"minAvailable {pdb}",
            ]
        table.add(row)
    return table


def scenarios_table(config: dict[str, Any], runs: pd.DataFrame) -> HtmlTable:
    table = HtmlTable(
        [
            "scenario",
            "arrival",
            "target CV",
            "rate",
            "mean rate req/s",
            "duration",
            "warm-up s",
            "repetitions",
            "valid runs",
            "realized CV (mean)",
            "smallest KS p",
        ]
    )
    for name in config["experiment"]["scenarios"]:
        scenario = config["scenarios"][name]
        arrival = scenario["arrival"]
        if arrival == "exponential":
            cv = 1.0
        elif arrival == "constant":
            cv = 0.0
        elif "cv" in scenario:
            cv = scenario["cv"]
        else:
            cv = 1.0 / math.sqrt(scenario["shape"])
        if "rate_rps" in scenario:
            rate = f"{scenario['rate_rps']:g} req/s"
        else:
            rate = f"{scenario['utilization']:g} x reference saturation"
        duration = (
            f"{scenario['duration_s']:g} s"
            if "duration_s" in scenario
            else f"{scenario['requests']} requests"
        )
        here = runs[runs["scenario"] == name] if len(runs) else runs
        valid = here[here["valid"].astype(bool)] if len(here) else here

        def column(frame: pd.DataFrame, key: str) -> pd.Series:
            if key not in frame:
                return pd.Series(dtype=float)
            return pd.to_numeric(frame[key], errors="coerce").dropna()

        rates = column(valid, "target_rate_rps")
        table.add(
            [
                name,
                arrival,
                cv,
                rate,
                rates.mean() if len(rates) else DASH,
                duration,
                scenario["warmup_s"],
                scenario["repetitions"],
                f"{len(valid)} of {len(here)}",
                column(valid, "realized_cv").mean() if len(column(valid, "realized_cv")) else DASH,
                (fmt_p(column(valid, "ks_pvalue").min()), "num")
                if len(column(valid, "ks_pvalue"))
                else DASH,
            ]
        )
    return table


def _ceiling_cell(record: dict[str, Any]) -> str:
    """The ceiling and its strategy; where it was measured beside the search, both of those
    measurements and the model stage's."""
    if not _finite(record.get("ceiling_texts_per_s")):
        return DASH
    cell = f"{fmt(record['ceiling_texts_per_s'])} ({record.get('ceiling_strategy')}"
    if _finite(record.get("ceiling_before_texts_per_s")) or _finite(
        record.get("ceiling_after_texts_per_s")
    ):
        cell += (
            f"; beside the search: {fmt(record.get('ceiling_before_texts_per_s'))} before, "
            f"{fmt(record.get('ceiling_after_texts_per_s'))} after; model stage "
            f"{fmt(record.get('model_stage_ceiling_texts_per_s'))}"
        )
    return cell + ")"


def capacity_html_table(capacity: pd.DataFrame) -> HtmlTable:
    table = HtmlTable(
        [
            "variant",
            "unloaded p50 / p99 ms",
            "saturation: answered req/s (offered)",
            "kept up within req/s",
            "vs reference",
            "at the SLO: answered req/s (offered)",
            "SLO bracket req/s",
            "vs reference",
            "SLO p99 ms",
            "in-process ceiling texts/s (strategy)",
            "serving efficiency",
            "M/G/1 capacity req/s",
            "measured / M/G/1",
            "steps",
            "note",
        ]
    )
    for record in capacity.to_dict("records"):
        unattainable = record.get("capacity_unattainable")
        at_slo = (
            _cell(unattainable)
            if isinstance(unattainable, str) and unattainable
            else (
                f"{fmt(record.get('capacity_rps'))} ({fmt(record.get('capacity_offered_rps'))})"
                + ("" if _is_true(record.get("capacity_confirmed")) else ", not confirmed")
                + (
                    f", {int(record['capacity_requests']):,} requests"
                    if _finite(record.get("capacity_requests"))
                    else ""
                ),
                "num",
            )
        )
        table.add(
            [
                record["variant"],
                (
                    f"{fmt(record.get('unloaded_p50_ms'))} / {fmt(record.get('unloaded_p99_ms'))}",
                    "num",
                ),
                (
                    f"{fmt(record.get('saturation_rps'))} "
                    f"({fmt(record.get('saturation_offered_rps'))}"
                    + (", overload" if record.get("saturation_from") == "overload" else "")
                    + ")",
                    "num",
                ),
                (_bracket(record, "saturation"), "num"),
                _ratio(record.get("saturation_vs_reference")),
                at_slo,
                (_bracket(record, "capacity"), "num"),
                _ratio(record.get("capacity_vs_reference")),
                (fmt(record.get("slo_p99_ms")), "num"),
                _ceiling_cell(record),
                (fmt_percent(record.get("serving_efficiency")), "num"),
                (fmt(record.get("mg1_capacity_rps")), "num"),
                (fmt_percent(record.get("capacity_vs_mg1")), "num"),
                (fmt(record.get("n_steps")), "num"),
                _cell(record.get("note")),
            ]
        )
    return table


def tuning_html_table(tuning: pd.DataFrame) -> HtmlTable:
    table = HtmlTable(
        [
            "trial",
            "role",
            "configuration",
            "outcome",
            "saturation req/s",
            "capacity at the SLO req/s (bracket)",
            "p50 / p99 ms at the common rate",
            "measured s",
            "Pareto",
            "note",
        ]
    )
    for record in tuning.to_dict("records"):
        if _finite(record.get("capacity_rps")):
            capacity = f"{fmt(record['capacity_rps'])} ({_bracket(record, 'capacity')})"
        elif record.get("outcome") != "unsearched" and _finite(
            record.get("capacity_bracket_low_rps")
        ):  # met the incumbent's capacity, failed its next rate: a tie, not searched
            capacity = f"tie ({_bracket(record, 'capacity')})"
        elif _finite(record.get("capacity_below_rps")):
            capacity = f"< {fmt(record['capacity_below_rps'])}"
        else:
            capacity = DASH
        common = (
            f"{fmt(record.get('common_p50_ms'))} / {fmt(record.get('common_p99_ms'))}"
            if _finite(record.get("common_p50_ms"))
            else DASH
        )
        table.add(
            [
                record["trial"],
                record.get("role"),
                record["configuration"],
                record["outcome"],
                (fmt(record.get("saturation_rps")), "num"),
                (capacity, "num"),
                (common, "num"),
                (fmt(record.get("measured_s")), "num"),
                "yes" if _is_true(record.get("pareto")) else "",
                _cell(record.get("note")),
            ]
        )
    return table


def tuning_context(
    config: dict[str, Any], inputs: ReportInputs, tuning: pd.DataFrame, capacity: pd.DataFrame
) -> dict[str, Any] | None:
    """The tuning section: what was chosen, from how many configurations, in how long, and
    what the study's own calibration of the tuned variant measured again."""
    if not len(tuning) or "configuration" not in tuning:
        return None
    tuned = _read_json(inputs.results_dir / "tuning" / TUNED)
    provenance = tuned.get("provenance") or {}
    variant = tuned.get("variant", config["tuning"]["variant"])
    return {
        "variant": variant,
        "configuration": tuned.get("configuration"),
        "pinned": bool(tuned.get("pinned")),
        "trials": provenance.get("trials", len(tuning)),
        "elapsed_s": provenance.get("elapsed_s"),
        "budget_s": provenance.get("budget_s"),
        "capacity_rps": provenance.get("capacity_rps"),
        "measured_again": None
        if tuned.get("pinned")
        else _measured_again(variant, provenance, capacity),
        "table": tuning_html_table(tuning),
    }


def _measured_again(
    variant: str, provenance: dict[str, Any], capacity: pd.DataFrame
) -> dict[str, Any] | None:
    """The tuned variant's calibration on the tuning's target (local) beside the tuning's
    search of the same configuration: the same arrivals at each rate (common random numbers)
    minutes apart, so their ratio is how far one search repeats on this machine."""
    if not len(capacity) or "variant" not in capacity:
        return None
    rows = capacity[(capacity["variant"] == variant) & (capacity["target"] == "local")]
    if not len(rows):
        return None
    row = rows.iloc[0]
    again: dict[str, Any] = {}
    for answer in ("capacity_rps", "saturation_rps"):
        measured, tuned = row.get(answer), provenance.get(answer)
        again[answer] = measured if _finite(measured) else None
        again[f"{answer}_ratio"] = (
            measured / tuned if _finite(measured) and _finite(tuned) else None
        )
    return again


def _bracket(record: dict[str, Any], answer: str) -> str:
    low, high = record.get(f"{answer}_bracket_low_rps"), record.get(f"{answer}_bracket_high_rps")
    return f"{fmt(low)} - {fmt(high)}" if _finite(low) else DASH


def _ratio(value: Any) -> Any:
    return (f"{fmt(value)}x", "num") if _finite(value) else DASH


def ablation_html_table(ablation: pd.DataFrame, ci_level: float) -> HtmlTable:
    table = HtmlTable(
        [
            "scenario",
            "metric",
            "level",
            "variant",
            "reps",
            "reference",
            "optimized",
            "level alone",
            f"share of total gain [{100 * ci_level:.0f}% t-CI of per-repetition shares]",
            "note",
        ]
    )
    for record in ablation.to_dict("records"):
        share = fmt_percent(record.get("share_of_total_gain"))
        if _finite(record.get("share_ci_low")):
            share += (
                f" [{fmt_percent(record['share_ci_low'])}, {fmt_percent(record['share_ci_high'])}]"
            )
        table.add(
            [
                _cell(record.get("scenario")),
                _cell(record.get("metric")),
                _cell(record.get("level")),
                _cell(record.get("variant")),
                (fmt(record.get("n_reps")), "num") if _finite(record.get("n_reps")) else DASH,
                (fmt(record.get("reference_value")), "num"),
                (fmt(record.get("optimized_value")), "num"),
                (fmt(record.get("level_value")), "num"),
                (share, "num"),
                _cell(record.get("note")),
            ]
        )
    return table


RUN_COLUMNS = [
    ("variant", "variant"),
    ("scenario", "scenario"),
    ("repetition", "rep"),
    ("status", "status"),
    ("seed", "seed"),
    ("target_rate_rps", "target req/s"),
    ("achieved_rate_rps", "achieved req/s"),
    ("realized_cv", "realized CV"),
    ("ks_pvalue", "KS p"),
    ("send_lag_p99_ms", "send lag p99 ms"),
    ("generator_cpu_percent", "generator CPU %"),
    ("latency_p99_ms", "p99 ms"),
    ("n_measured", "measured requests"),
]


def runs_html_table(runs: pd.DataFrame) -> HtmlTable:
    present = [(key, label) for key, label in RUN_COLUMNS if key in runs.columns]
    table = HtmlTable([label for _, label in present])
    for record in runs.to_dict("records"):
        cells = []
        for key, _ in present:
            value = _cell(record.get(key))
            if isinstance(value, tuple):  # missing
                pass
            elif key == "ks_pvalue":
                value = (fmt_p(value), "num")
            elif key == "status":
                value = (value, "ok" if value == "valid" else "worse")
            elif key == "seed":
                value = (str(int(value)), "num")
            elif isinstance(value, (int, float, np.integer, np.floating)):
                value = (fmt(value), "num")
            cells.append(value)
        table.add(cells)
    return table


def downloads(tables_dir: Path) -> list[dict[str, str]]:
    """The tables as CSV files embedded in the page (data: links)."""
    links = []
    for path in sorted(tables_dir.glob("*.csv")):
        links.append(
            {
                "name": path.name,
                "href": data_uri(path, "text/csv"),
                "size": f"{path.stat().st_size / 1024:.1f} KiB",
            }
        )
    return links


def reproduce_commands(config: dict[str, Any]) -> list[str]:
    results = config["results_dir"]
    configfile = "" if results == "results" else " --configfile <your config, e.g. below>"
    return [
        "git checkout {commit}   # the commit the runs were made with (see provenance)",
        "make venv                 # the pinned environment (envs/requirements.lock)",
        f".venv/bin/snakemake --cores 4 all{configfile}",
        "# re-render tables, figures and this page from the raw data on disk (no load test):",
        f".venv/bin/snakemake --cores 1 report --allowed-rules tables figures report_html report"
        f"{configfile}",
        f".venv/bin/servebench report render{configfile}   # the same, without Snakemake",
        "# Snakemake's own report (figures and tables with the same captions, plus the DAG):",
        f".venv/bin/snakemake --report {results}/snakemake_report.html{configfile}",
    ]


RESILIENCE_REPORT_COLUMNS = [
    "variant",
    "restart",
    "fault",
    "repetition",
    "start_s",
    "requests_not_ok",
    "not_ok_by_outcome",
    "time_to_first_error_s",
    "time_to_first_ok_s",
    "time_to_recover_s",
    "relapsed",
    "peak_latency_ms",
    "readyz_failed_probes",
    "requests_lost",
]


def _skipped_faults_note(inputs: ReportInputs) -> str:
    """What a target without fault kinds (external) skipped: each configured fault, with why."""
    skipped: dict[str, str] = {}
    for path in sorted(inputs.results_dir.glob(f"resilience/*/*/{PROBES_ONLY}/rep*/{FAULTS}")):
        data = _read_json(path)
        for fault in data.get("skipped_faults") or []:
            skipped.setdefault(str(fault.get("name")), str(fault.get("reason")))
    if not skipped:
        return ""
    return (
        "Probes only, no fault: every configured fault needs what servebench does not own on "
        "this target (" + "; ".join(f"{name}: {why}" for name, why in skipped.items()) + ")."
    )


def resilience_context(
    config: dict[str, Any], inputs: ReportInputs, report_dir: Path, items: dict[str, Any]
) -> dict[str, Any] | None:
    """The resilience section (servebench.faults): its table and one timeline per fault; None
    when the config runs no resilience experiment."""
    names = resilience_figure_names(resilience_fault_names(config))
    if not names:
        return None
    table = _read_table(inputs.tables_dir, "resilience")
    if not len(table):  # no resilience run finished (e.g. a report of the matrix only)
        return None
    if "recovered" in table.columns:
        table["time_to_recover_s"] = [
            "not recovered" if str(recovered) == "False" else value
            for value, recovered in zip(table["time_to_recover_s"], table["recovered"], strict=True)
        ]
    item = items["figures"]["resilience"]
    return {
        **_table_section(report_dir, items, "resilience"),
        "note": _skipped_faults_note(inputs),
        "table": frame_table(table, [c for c in RESILIENCE_REPORT_COLUMNS if c in table.columns]),
        "figures": [
            _figure(
                inputs.figures_dir,
                name,
                f"{item['title']}: {name.removeprefix('resilience_')}",
                caption_html(report_dir, item["caption"]),
                {},
            )
            for name in names
        ],
    }


def build_context(
    config: dict[str, Any], inputs: ReportInputs, report_dir: Path = REPORT_DIR
) -> dict[str, Any]:
    """Everything the template needs."""
    items = load_items(report_dir)
    tables = {name: _read_table(inputs.tables_dir, name) for name in TABLE_NAMES}
    runs = tables["runs"]
    experiment = config["experiment"]
    reference = experiment["reference_variant"]
    ci_level = float(config["analysis"]["ci_level"])
    setup = setup_context(config, inputs, runs)
    commit = str(setup["git_commit"]).removesuffix("-dirty")
    comparison = tables["comparison"]
    ablation = tables["ablation"]
    ablation_ran = bool(len(ablation)) and ablation["share_of_total_gain"].notna().any()
    invalid = tables["invalid_runs"]
    manifest = _read_json(inputs.figures_dir / "manifest.json")
    figure_notes = [
        f"{name}: {note}" for name, entry in manifest.items() for note in entry.get("notes", [])
    ]
    summary = tables["summary"]
    min_reps = int(summary["n_repetitions"].min()) if len(summary) else 0
    n_runs = len(runs)
    n_valid = int(runs["valid"].astype(bool).sum()) if n_runs else 0
    return {
        "title": "servebench report",
        "status": {"problems": [], **_read_json(inputs.status_json)},
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": stable_hash(config)[:12],
        "reference": reference,
        "variants": list(experiment["variants"]),
        "scenarios": list(experiment["scenarios"]),
        "ci_level_percent": f"{100 * ci_level:.0f}",
        "alpha": config["analysis"]["alpha"],
        "setup": setup,
        "n_runs": n_runs,
        "n_valid": n_valid,
        "min_reps": min_reps,
        "key_results": key_results(
            tables["summary"], comparison, experiment["scenarios"], reference
        ),
        "variants_table": variants_table(config, inputs.results_dir),
        "scenarios_table": scenarios_table(config, runs),
        "summary": _table_section(report_dir, items, "summary"),
        "summary_table": summary_html_table(tables["summary"], ci_level)
        if len(tables["summary"])
        else None,
        "comparison": _table_section(report_dir, items, "comparison"),
        "comparison_headline": comparison_html_table(comparison, HEADLINE_METRICS, ci_level)
        if len(comparison)
        else None,
        "comparison_full": comparison_html_table(comparison, None, ci_level)
        if len(comparison)
        else None,
        "ablation": _table_section(report_dir, items, "ablation"),
        "ablation_ran": ablation_ran,
        "ablation_table": ablation_html_table(ablation, ci_level) if len(ablation) else None,
        "capacity": _table_section(report_dir, items, "capacity"),
        "capacity_table": capacity_html_table(tables["capacity"])
        if len(tables["capacity"])
        else None,
        "tuning": _table_section(report_dir, items, "tuning"),
        "tuning_result": tuning_context(config, inputs, tables["tuning"], tables["capacity"]),
        "runs": _table_section(report_dir, items, "runs"),
        "runs_table": runs_html_table(runs) if n_runs else None,
        "invalid": _table_section(report_dir, items, "invalid_runs"),
        "invalid_table": frame_table(
            invalid, ["variant", "scenario", "repetition", "status", "reasons"]
        )
        if len(invalid)
        else None,
        "problems": _table_section(report_dir, items, "problems"),
        "problem_list": (
            list(tables["problems"]["problem"].astype(str)) if len(tables["problems"]) else []
        )
        + figure_notes,
        "figures": figures_context(config, inputs.figures_dir, report_dir),
        "resilience": resilience_context(config, inputs, report_dir, items),
        "downloads": downloads(inputs.tables_dir),
        "reproduce": [line.replace("{commit}", commit) for line in reproduce_commands(config)],
        "config_yaml": yaml.safe_dump(config, sort_keys=False, default_flow_style=None),
    }


def render_report(
    config: dict[str, Any],
    inputs: ReportInputs,
    out_html: str | Path,
    report_dir: Path = REPORT_DIR,
) -> Path:
    """Render results/report.html (written atomically)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(report_dir)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = environment.get_template(TEMPLATE).render(**build_context(config, inputs, report_dir))
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, out)
    return out


def escape(text: str) -> str:
    return html.escape(text)


def render_study_report(
    config: dict[str, Any], model_name: str, runtimes: Sequence[str], out_html: Path | None = None
) -> Path:
    """results/report.html (or `out_html`) from the tables and figures on disk."""
    layout = Layout.of(config)
    inputs = ReportInputs.of(layout, model_name, runtimes)
    return render_report(config, inputs, out_html or layout.report_html)


def render_from_results(config: dict[str, Any], model_name: str, runtimes: Sequence[str]) -> Path:
    """Tables, figures (the resilience ones too, when there are resilience runs) and
    report.html from the results on disk, without Snakemake: nothing upstream reruns."""
    from servebench.analysis.figures import write_study_figures
    from servebench.analysis.resilience import resilience_outputs
    from servebench.analysis.tables import write_study_tables

    layout = Layout.of(config)
    write_study_tables(config)
    write_study_figures(config, model_name, runtimes)
    if any(
        (spec.path(layout.results_dir) / FAULTS).is_file() for spec in resilience_matrix(config)
    ):
        resilience_outputs(config, layout.table(RESILIENCE_TABLE), layout.figures_dir)
    return render_study_report(config, model_name, runtimes)
