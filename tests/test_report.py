"""Tables, figures and the HTML report from a synthetic results tree in the real file formats.

The tree is written by `build_results_tree`: every run's requests.parquet and summary.json come
from the load generator's own code (`request_table`, `summarize`) on a seeded schedule with
simulated service times, so the analysis reads exactly what a real run writes. The last test
opens the report in headless Chromium (skipped, with the reason, where it is not installed).
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servebench import arrivals, layout
from servebench.analysis import tables as analysis_tables
from servebench.analysis.figures import BATCH_SIZE_HISTOGRAMS
from servebench.config import load_config
from servebench.jobs.calibrate import SearchResult, Step, judge_step
from servebench.jobs.calibrate import write_calibration as write_calibration_files
from servebench.loadgen.summary import request_table, summarize
from servebench.matrix import derived_seed, run_matrix, run_seed
from servebench.provenance import environment, stable_hash, write_json
from servebench.records import RunSummary
from servebench.report import browser, html
from servebench.settings import CalibrationSettings, model_runtimes

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "synthetic-roberta-test"
# Median service time (ms) of each simulated variant.
SERVICE_MEDIAN_MS = {
    "baseline": 30.0,
    "optimized": 10.0,
    "ablation-runtime": 18.0,
    "ablation-service": 22.0,
    "ablation-deployment": 27.0,
}
REFERENCE_CAPACITY_RPS = 40.0


def analysis_config(
    *,
    variants=("baseline", "optimized"),
    repetitions=3,
    duration_s=12.0,
    results_dir="results",
) -> dict:
    """The tiny profile with a few more repetitions, for a synthetic tree."""
    config = copy.deepcopy(load_config(REPO_ROOT / ".test" / "config.yaml"))
    config["results_dir"] = str(results_dir)
    config["experiment"]["variants"] = list(variants)
    for name in config["experiment"]["scenarios"]:
        config["scenarios"][name].update(repetitions=repetitions, duration_s=duration_s)
    config["analysis"] = {**config["analysis"], "ci_level": 0.95, "alpha": 0.05}
    return config


def _raw_log(schedule, variant: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(schedule)
    service_s = SERVICE_MEDIAN_MS[variant] / 1000.0 * rng.lognormal(0.0, 0.35, size=n)
    lag_s = rng.uniform(0.0001, 0.0008, size=n)
    sent = schedule.scheduled_s + lag_s
    outcome = np.where(rng.random(n) < 0.01, "rejected", "ok")
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "worker": 0,
            "payload_index": np.arange(n) % 50,
            "scheduled_s": schedule.scheduled_s,
            "sent_s": sent,
            "done_s": sent + service_s,
            "status": np.where(outcome == "ok", 200, 503),
            "outcome": outcome,
            "delayed": 0,
            "error": "",
        }
    )


def write_run(run_dir: Path, config: dict, spec, rate_rps: float) -> None:
    """One run folder as runs.run_scenario leaves it."""
    scenario = config["scenarios"][spec.scenario]
    seed = run_seed(config, spec.scenario, spec.repetition)
    schedule = arrivals.make_schedule(
        scenario["arrival"],
        seed=seed,
        rate_rps=rate_rps,
        cv=scenario.get("cv"),
        shape=scenario.get("shape"),
        duration_s=scenario["duration_s"],
    )
    warmup_s = scenario.get("warmup_s", 5)
    table = request_table(
        _raw_log(schedule, spec.variant, derived_seed(seed, spec.variant)), warmup_s
    )
    summary = summarize(
        table,
        schedule,
        warmup_s=warmup_s,
        validity=config["loadgen"]["validity"],
        worker_results=[{"worker": 0, "cpu_percent": 12.0, "finished": True}],
        workers=1,
    )
    summary.settings = {"endpoint": "/classify_batch", "workers": 1}
    summary.started_at = "x"
    run_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(run_dir / "requests.parquet", index=False)
    write_json(run_dir / "summary.json", summary.to_dict())
    _write_monitoring(run_dir, table, spec.variant, config)
    env = ENVIRONMENT
    write_json(
        run_dir / "meta.json",
        {
            "target": spec.target,
            "variant": spec.variant,
            "scenario": spec.scenario,
            "repetition": spec.repetition,
            "seed": seed,
            "rate_rps": rate_rps,
            "scenario_config": scenario,
            "variant_settings": config["variants"][spec.variant],
            "bento_tag": f"sentiment-{spec.variant}:test",
            "model_name": MODEL_NAME,
            "weights": "synthetic",
            "runtime": config["variants"][spec.variant]["runtime"],
            "config_hash": stable_hash(config),
            "cpus": config["cpus"],
            "git_commit": env["git_commit"],
            "packages": env["packages"],
            "cpu": env["cpu"],
            "python": env["python"],
            "wall_time_s": 20.0,
            "valid": summary.valid,
            "invalid_reasons": summary.invalid_reasons,
        },
    )


def _write_monitoring(run_dir: Path, table: pd.DataFrame, variant: str, config: dict) -> None:
    horizon = int(math.ceil(table["done_s"].max())) + 2
    batching = config["variants"][variant].get("batching", {}).get("enabled", False)
    labels = "method_name=classify_batch;service_name=sentiment;worker_index=1"
    metric_rows, resource_rows = [], []
    batch_sum = batch_count = 0.0
    for second in range(horizon):
        done = int(((table["done_s"] >= second - 1) & (table["done_s"] < second)).sum())
        if batching and done:
            batches = max(1, done // 3)
            batch_sum, batch_count = batch_sum + done, batch_count + batches
        stamp = 1.8e9 + second
        if batching:
            metric_rows += [
                (stamp, second, f"{BATCH_SIZE_HISTOGRAMS[0]}_sum", labels, batch_sum),
                (stamp, second, f"{BATCH_SIZE_HISTOGRAMS[0]}_count", labels, batch_count),
            ]
        metric_rows.append((stamp, second, "bentoml_service_request_in_progress", labels, 1.0))
        cpu = min(100.0, done * SERVICE_MEDIAN_MS[variant] / 10.0)
        resource_rows.append((stamp, second, 2, cpu, 300 * 2**20 + second * 2**16, 200 * 2**20))
    pd.DataFrame(
        metric_rows, columns=["timestamp_s", "elapsed_s", "metric", "labels", "value"]
    ).to_csv(run_dir / "server_metrics.csv", index=False)
    pd.DataFrame(
        resource_rows,
        columns=[
            "timestamp_s",
            "elapsed_s",
            "n_processes",
            "cpu_percent",
            "rss_bytes",
            "max_process_rss_bytes",
        ],
    ).to_csv(run_dir / "resources.csv", index=False)


def write_calibration(results_dir: Path, config: dict, variant: str) -> None:
    """A calibration search's files, written by the search's own code from simulated steps of
    a server whose saturation throughput is `saturation` (an M/M/1-like p99)."""
    folder = results_dir / "calibration" / "local" / variant
    folder.mkdir(parents=True, exist_ok=True)
    calibration = CalibrationSettings.of(config)
    saturation = REFERENCE_CAPACITY_RPS * SERVICE_MEDIAN_MS["baseline"] / SERVICE_MEDIAN_MS[variant]
    result = SearchResult(unloaded_ms=[SERVICE_MEDIAN_MS[variant]] * 20, confirmed=True)
    for rate in (5.0, 10.0, 20.0, 40.0, 80.0, 160.0):
        load = rate / saturation
        answered = min(rate, saturation)
        p99 = SERVICE_MEDIAN_MS[variant] * 2.3 / max(1.0 - load, 0.02)
        summary = RunSummary(
            valid=True,
            offered_rate_rps=rate,
            achieved_rate_rps=rate,
            throughput_rps=answered,
            latency_p50_ms=p99 / 2.3,
            latency_p99_ms=p99,
            latency_all_p99_ms=p99,
            counts={"ok": 200},
        )
        keeps_up, meets_slo, reasons = judge_step(summary, calibration, True)
        result.steps.append(
            Step(len(result.steps), "ramp", rate, summary, keeps_up, meets_slo, reasons, 10.0)
        )
    write_calibration_files(result, calibration, folder, {"variant": variant, "target": "local"})


def write_model(results_dir: Path) -> Path:
    model_dir = results_dir / "model" / MODEL_NAME
    for index, runtime in enumerate(("pytorch", "onnx", "onnx-int8")):
        folder = model_dir / runtime
        write_json(
            folder / "provenance.json",
            {
                "model_name": MODEL_NAME,
                "model_id": "servebench/tiny-roberta-does-not-exist",
                "weights": "synthetic",
                "source": "synthetic",
                "runtime": runtime,
                "num_parameters": 143811,
                "max_length": 128,
                "size_on_disk_bytes": 650866 // (1 + index),
                "resolution_reason": "not in the local cache; HF_HUB_OFFLINE is set",
            },
        )
        write_json(
            folder / "fidelity.json",
            {
                "runtime": runtime,
                "label_agreement": 1.0 - 0.004 * index,
                "max_abs_prob_diff": 0.001 * index,
                "passed": True,
                "accuracy": None,
                "accuracy_note": "synthetic weights: accuracy is meaningless",
            },
        )
        pd.DataFrame(
            [
                {
                    "runtime": runtime,
                    "batch_size": size,
                    "threads": 1,
                    "median_ms": size * (3.0 - index),
                    "sequences_per_s": 1000.0 / (3.0 - index) * (1 + math.log2(size) / 4),
                }
                for size in (1, 4, 8, 16, 32)
            ]
        ).to_csv(folder / "inprocess_bench.csv", index=False)
    data = results_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    lengths = np.random.default_rng(0).gamma(3.0, 15.0, size=200).astype(int) + 5
    pd.DataFrame({"id": range(200), "n_tokens": lengths, "truncated": lengths > 128}).to_csv(
        data / "payload_token_lengths.csv", index=False
    )
    write_json(
        data / "payload_token_lengths_summary.json",
        {"max_length": 128, "model_name": MODEL_NAME, "weights": "synthetic"},
    )
    write_json(results_dir / "provenance" / "environment.json", ENVIRONMENT)
    return model_dir


ENVIRONMENT = environment()


def build_results_tree(
    results_dir: Path,
    config: dict,
    *,
    invalid=(),
    failed=(),
    missing=(),
    without_parquet=(),
) -> Path:
    """A complete results tree for `config`; the run keys in `invalid`, `failed`, `missing`
    and `without_parquet` ((variant, scenario, repetition)) get those defects."""
    results_dir = Path(results_dir)
    for variant in config["experiment"]["variants"]:
        write_calibration(results_dir, config, variant)
    for spec in run_matrix(config):
        key = (spec.variant, spec.scenario, spec.repetition)
        run_dir = spec.path(results_dir)
        if key in missing:
            continue
        if key in failed:
            write_json(
                run_dir / "summary.json",
                {
                    "valid": False,
                    "invalid_reasons": ["run failed: ServerStartError: not ready after 300 s"],
                    "error": "ServerStartError: not ready after 300 s",
                },
            )
            write_json(run_dir / "meta.json", {"variant": spec.variant, "valid": False})
            continue
        rate = config["scenarios"][spec.scenario]["utilization"]
        write_run(run_dir, config, spec, rate * REFERENCE_CAPACITY_RPS)
        if key in invalid:
            summary = json.loads((run_dir / "summary.json").read_text())
            summary["valid"] = False
            summary["invalid_reasons"] = ["send-lag p99 9.10 ms exceeds 5.00 ms (synthetic)"]
            write_json(run_dir / "summary.json", summary)
        if key in without_parquet:
            (run_dir / "requests.parquet").unlink()
    write_model(results_dir)
    return results_dir


def render_all(config: dict, results_dir: Path) -> dict:
    """Tables, figures and the report, as `servebench report render` does."""
    assert Path(config["results_dir"]) == results_dir
    html.render_from_results(config, MODEL_NAME, model_runtimes(config))
    tables = {
        name: pd.read_csv(results_dir / "tables" / f"{name}.csv") for name in layout.TABLE_NAMES
    }
    manifest = json.loads((results_dir / "figures" / "manifest.json").read_text())
    return {"tables": tables, "manifest": manifest}


DEFECTS = {
    "invalid": [("optimized", "bursty", 2)],
    "failed": [("baseline", "bursty", 1)],
    "without_parquet": [("optimized", "steady", 1)],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One synthetic study (with an invalid, a failed and a parquet-less run) rendered once."""
    results_dir = tmp_path_factory.mktemp("study") / "results"
    config = analysis_config(results_dir=results_dir)
    build_results_tree(results_dir, config, **DEFECTS)
    output = render_all(config, results_dir)
    return config, results_dir, output


def test_tables_list_every_run_and_exclude_the_invalid_ones(rendered):
    config, results_dir, output = rendered
    tables = output["tables"]
    runs = pd.read_csv(results_dir / "tables" / "runs.csv")
    assert len(runs) == len(run_matrix(config))
    status = runs.set_index(["variant", "scenario", "repetition"])["status"]
    assert status[("optimized", "bursty", 2)] == "invalid"
    assert status[("baseline", "bursty", 1)] == "failed"
    assert (status == "valid").sum() == len(runs) - 2
    # every summary.json field is a column, and provenance too
    assert {"latency_p99_ms", "counts_ok", "ks_pvalue", "meta_git_commit", "meta_weights"} <= set(
        runs.columns
    )
    invalid = pd.read_csv(results_dir / "tables" / "invalid_runs.csv")
    assert set(invalid["status"]) == {"invalid", "failed"}
    assert invalid["reasons"].str.contains("send-lag").any()
    assert invalid["reasons"].str.contains("ServerStartError").any()
    summary = tables["summary"].set_index(["variant", "scenario"])
    assert summary.loc[("optimized", "bursty"), "n_repetitions"] == 2
    assert summary.loc[("baseline", "steady"), "n_repetitions"] == 3
    row = summary.loc[("baseline", "steady")]
    assert row["latency_p99_ms_ci_low"] <= row["latency_p99_ms"] <= row["latency_p99_ms_ci_high"]
    # the problems table names the valid run without requests.parquet
    problems = pd.read_csv(results_dir / "tables" / "problems.csv")["problem"]
    assert problems.str.contains("optimized/steady/rep1").any()


def test_comparison_finds_the_simulated_speedup(rendered):
    _, results_dir, _ = rendered
    comparison = pd.read_csv(results_dir / "tables" / "comparison.csv")
    p50 = comparison[(comparison["metric"] == "latency_p50_ms")].set_index("scenario")
    # simulated: optimized's service time is a third of baseline's
    assert p50.loc["steady", "ratio"] == pytest.approx(1 / 3, rel=0.1)
    assert p50.loc["steady", "ci_low"] <= p50.loc["steady", "ratio"] <= p50.loc["steady", "ci_high"]
    assert p50.loc["steady", "verdict_class"] == "better"
    assert "faster" in p50.loc["steady", "verdict"]
    assert p50.loc["steady", "cliffs_delta"] < -0.9
    assert p50.loc["steady", "design"] == "paired"
    # bursty: reps 1 (baseline failed) and 2 (optimized invalid) are out: one pair left, so
    # the test is the unpaired one, named as such
    assert p50.loc["bursty", "design"] == "unpaired" and "Welch" in p50.loc["bursty", "test"]
    assert (comparison["p_holm"].dropna() >= comparison["p_value"].dropna()).all()


def test_capacity_and_ablation_tables(rendered):
    _, results_dir, _ = rendered
    capacity = pd.read_csv(results_dir / "tables" / "capacity.csv").set_index("variant")
    assert capacity.loc["baseline", "saturation_vs_reference"] == pytest.approx(1.0)
    # The simulated optimized server is 3 times as fast: it kept up with 80 req/s and answered
    # its full speed, 3 x the baseline's 40, under overload (160).
    assert capacity.loc["optimized", "saturation_vs_reference"] == pytest.approx(3.0)
    assert capacity.loc["optimized", "saturation_from"] == "overload"
    assert capacity.loc["baseline", "saturation_from"] == "kept up"
    assert capacity.loc["optimized", "capacity_rps"] > capacity.loc["baseline", "capacity_rps"]
    # Each answer's step there holds 200 requests: too few for a 95 % interval of a p99.
    assert (capacity.loc[["baseline", "optimized"], "capacity_requests"] == 200).all()
    assert capacity.loc["optimized", "note"].count("too few for a distribution-free") == 1
    ablation = pd.read_csv(results_dir / "tables" / "ablation.csv")
    # no ablation variant ran in this study: one note row per level, no shares
    assert set(ablation["variant"]) == {
        "ablation-runtime",
        "ablation-service",
        "ablation-deployment",
    }
    assert ablation["share_of_total_gain"].isna().all()
    assert ablation["note"].str.contains("no ablation variant was run").all()


def test_every_figure_is_written_as_png_and_pdf(rendered):
    config, results_dir, output = rendered
    for name in layout.figure_names(config["experiment"]["scenarios"]):
        for fmt in ("png", "pdf"):
            path = results_dir / "figures" / f"{name}.{fmt}"
            assert path.is_file() and path.stat().st_size > 1000, path
    # the parquet-less valid run is named in the manifest, not hidden
    notes = json.dumps(output["manifest"])
    assert "optimized/steady/rep1" in notes


def test_report_is_self_contained_and_complete(rendered):
    config, results_dir, _ = rendered
    page = (results_dir / "report.html").read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(images) == len(layout.figure_names(config["experiment"]["scenarios"]))
    assert all(src.startswith("data:image/png;base64,") for src in images)
    # nothing is fetched from anywhere
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
    assert 'id="synthetic-banner"' in page
    for text in ("send-lag p99 9.10 ms", "ServerStartError", "faster", "How to reproduce"):
        assert text in page, text
    # the captions of the tables and figures are there
    assert "Cliff" in page and "paired t-test" in page and "bootstrap" not in page


def test_ablation_shares_when_the_ablation_variants_ran(tmp_path):
    variants = ("baseline", "optimized", "ablation-runtime", "ablation-service")
    config = analysis_config(variants=variants, repetitions=2, duration_s=8.0)
    results_dir = tmp_path / "results"
    build_results_tree(results_dir, config)
    tables = analysis_tables.build_tables(config, run_matrix(config), results_dir)
    ablation = tables["ablation"]
    p50 = ablation[(ablation["metric"] == "latency_p50_ms") & (ablation["scenario"] == "steady")]
    shares = p50.set_index("level")["share_of_total_gain"]
    # simulated medians 30 -> 10 ms in total; runtime alone 30 -> 18, service alone 30 -> 22
    assert shares["runtime"] == pytest.approx(12 / 20, abs=0.08)
    assert shares["service"] == pytest.approx(8 / 20, abs=0.08)
    assert math.isnan(shares["deployment"])
    assert "not run" in p50.set_index("level").loc["deployment", "note"]
    capacity_rows = ablation[ablation["metric"] == "saturation_rps"]
    assert len(capacity_rows) >= 3


def test_missing_runs_and_calibration_degrade_gracefully(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    config = analysis_config(repetitions=1, duration_s=6.0, results_dir=results_dir)
    # nothing at all on disk: the tables, figures and report are still produced
    output = render_all(config, results_dir)
    runs = output["tables"]["runs"]
    assert set(runs["status"]) == {"missing"}
    problems = output["tables"]["problems"]["problem"]
    assert problems.str.contains("no capacity.json").any()
    page = (results_dir / "report.html").read_text(encoding="utf-8")
    assert "not run" in page
    for name in layout.figure_names(config["experiment"]["scenarios"]):
        assert (results_dir / "figures" / f"{name}.png").is_file()


# --------------------------------------------------------------------------- headless Chromium


def test_report_opens_in_headless_chromium_with_every_image_loaded(rendered):
    if browser.chromium_executable() is None:
        reason = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    config, results_dir, _ = rendered
    result = browser.browser_check(results_dir / "report.html")
    assert result["images"] == len(layout.figure_names(config["experiment"]["scenarios"]))
    assert result["loaded"] == result["images"], result
    assert result["errors"] == [], result["errors"]
    assert result["console"] == [], result["console"]


def test_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    """The check can fail: a missing image and a script error are reported."""
    if browser.chromium_executable() is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        '<img src="data:image/png;base64,AAAA"><img src="missing.png">'
        "<script>console.error('boom')</script></body></html>"
    )
    result = browser.browser_check(page)
    assert result["images"] == 2 and result["loaded"] == 0
    assert any("boom" in error for error in result["errors"])
    assert any("IMG" in error for error in result["errors"])


def test_the_tuning_section_sets_the_calibration_beside_the_tuning(tmp_path):
    """The tuned variant's calibration measures the chosen configuration again: the section
    gives its answers and their ratios to the tuning's, from the local target only, and none
    when the variant was pinned (served as written: another configuration)."""
    tuned = {
        "variant": "optimized",
        "configuration": "onnx-int8 greedy16-64 sub4 1x1 gc",
        "pinned": False,
        "provenance": {"capacity_rps": 40.0, "saturation_rps": 80.0, "trials": 3},
    }
    write_json(tmp_path / "tuning" / "tuned.json", tuned)
    tuning = pd.DataFrame(
        {"trial": ["t00"], "configuration": [tuned["configuration"]], "outcome": ["chosen"]}
    )
    capacity = pd.DataFrame(
        {
            "target": ["docker", "local", "local"],
            "variant": ["optimized", "optimized", "baseline"],
            "capacity_rps": [10.0, 34.0, np.nan],
            "saturation_rps": [20.0, 72.0, 11.0],
        }
    )
    inputs = html.ReportInputs(tmp_path, tmp_path / "tables", tmp_path / "figures")
    config = load_config()
    again = html.tuning_context(config, inputs, tuning, capacity)["measured_again"]
    assert again["capacity_rps"] == 34.0 and again["capacity_rps_ratio"] == pytest.approx(0.85)
    assert again["saturation_rps"] == 72.0 and again["saturation_rps_ratio"] == pytest.approx(0.9)
    write_json(tmp_path / "tuning" / "tuned.json", {**tuned, "pinned": True})
    assert html.tuning_context(config, inputs, tuning, capacity)["measured_again"] is None
