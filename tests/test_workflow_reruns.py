"""The experiment DAG end to end on the tiny profile: reruns and interruption.

One real run of `snakemake all --configfile .test/config.yaml` into a temporary results folder
(tiny model, real Bentos, real servers, real Locust), then dry runs that check what Snakemake
would redo after each kind of change, and a Ctrl-C in the middle of a load test.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from study_testbed import CORES, job_counts, run_tiny_study, snakemake_command

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


MEASUREMENT_RULES = {"calibrate", "tune", "loadtest", "resilience_run"}


def planned_jobs(
    snakemake_exe: str, results_dir: Path, *args: str, config: tuple[str, ...] = ()
) -> dict[str, int]:
    """{rule: number of jobs} that a dry run of `args` would execute."""
    result = subprocess.run(
        # The targets first: options such as --quiet and --forcerun take every word after them.
        snakemake_command(
            snakemake_exe, results_dir, *args, "-n", "--quiet", "rules", config=config
        ),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_counts(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def finished_study(study_run) -> Path:
    return study_run[0]


def job_intervals(output: str) -> list[tuple[str, datetime, datetime, str]]:
    """(rule, start, end, jobid) of every job, from Snakemake's timestamped log lines."""
    stamp = None
    started: dict[str, tuple[str, datetime]] = {}
    pending_rule = None
    intervals = []
    for line in output.splitlines():
        match = re.match(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", line.strip())
        if match:
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        rule = re.match(r"^(?:local)?rule (\S+):$", line.strip())
        if rule:
            pending_rule = rule.group(1)
            continue
        jobid = re.match(r"^jobid: (\d+)$", line.strip())
        if jobid and pending_rule and stamp:
            started[jobid.group(1)] = (pending_rule, stamp)
            pending_rule = None
            continue
        finished = re.match(r"^Finished jobid: (\d+)", line.strip())
        if finished and finished.group(1) in started and stamp:
            rule_name, start = started.pop(finished.group(1))
            intervals.append((rule_name, start, stamp, finished.group(1)))
    return intervals


def test_no_measurement_runs_beside_another_job(study_run):
    """With --cores 4 on a 2-core machine, a calibration, load test or resilience run owns
    the machine: no other job's interval overlaps its own (1 s resolution of the log)."""
    intervals = job_intervals(study_run[1])
    assert {rule for rule, *_ in intervals} >= MEASUREMENT_RULES, intervals
    for rule, start, end, jobid in intervals:
        if rule not in MEASUREMENT_RULES:
            continue
        beside = [
            (other, other_start, other_end)
            for other, other_start, other_end, other_id in intervals
            if other_id != jobid and other_start < end and start < other_end
        ]
        assert beside == [], f"{rule} {start}-{end} ran beside {beside}"


def started_runs(output: str) -> list[tuple[str, str]]:
    """(variant, scenario) of every loadtest job in the order Snakemake started them."""
    runs, in_loadtest = [], False
    for line in output.splitlines():
        line = line.strip()
        if re.match(r"^(?:local)?rule \S+:$", line):
            in_loadtest = line.endswith("rule loadtest:")
        elif in_loadtest and line.startswith("wildcards:"):
            fields = dict(part.split("=", 1) for part in line[len("wildcards:") :].split(", "))
            runs.append((fields["variant"].strip(), fields["scenario"].strip()))
            in_loadtest = False
    return runs


def test_the_tuning_comes_first_and_runs_keep_their_matrix_order(study_run):
    """The tuned variant's Bento waits for the tuning; everything upstream of it has a higher
    priority than any load test, so the runs still go in the matrix's ABBA order."""
    from servebench.config import load_config
    from servebench.matrix import run_matrix

    intervals = job_intervals(study_run[1])
    tune_end = max(end for rule, _, end, _ in intervals if rule == "tune")
    first_run = min(start for rule, start, _, _ in intervals if rule == "loadtest")
    assert tune_end <= first_run
    planned = [
        (spec.variant, spec.scenario)
        for spec in run_matrix(load_config(REPO_ROOT / ".test" / "config.yaml"))
    ]
    assert started_runs(study_run[1]) == planned


# Every rule whose outputs the load tests need, directly or not.
UPSTREAM_OF_THE_RUNS = (
    "payloads",
    "model_pytorch",
    "model_runtime",
    "model_predictions",
    "model_fidelity",
    "inprocess_bench",
    "tune",
    "bento",
    "image",
    "calibrate",
)


@pytest.mark.parametrize("profile", [(), (".test/docker.yaml",)], ids=["local", "docker"])
def test_everything_the_runs_need_outranks_every_load_test(profile):
    """Snakemake does not pass a job's priority on to the jobs it needs: a rule upstream of the
    runs without a priority above theirs waits until no run is ready. On the docker target the
    optimized image (no priority) was built only after all 9 baseline runs of a study, so the
    two variants' runs were not interleaved in ABBA order."""
    from types import SimpleNamespace

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    from servebench.matrix import run_matrix

    configfiles = [REPO_ROOT / ".test" / "config.yaml", *(REPO_ROOT / p for p in profile)]
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=4),
            config_settings=ConfigSettings(configfiles=configfiles),
            storage_settings=StorageSettings(),
            snakefile=REPO_ROOT / "Snakefile",
            workdir=REPO_ROOT,
        )
        rules = {rule.name: rule for rule in workflow._workflow.rules}
        config = workflow._workflow.config
    run_priorities = [
        rules["loadtest"].priority(
            SimpleNamespace(
                target=spec.target,
                variant=spec.variant,
                scenario=spec.scenario,
                rep=str(spec.repetition),
            )
        )
        for spec in run_matrix(config)
    ]
    assert run_priorities == sorted(run_priorities, reverse=True)  # the matrix's order
    for name in UPSTREAM_OF_THE_RUNS:
        assert rules[name].priority > max(run_priorities), name


def test_the_tuning_reports_and_a_pinned_variant_is_served_as_written(finished_study):
    """The tiny study pins the tuned variant (.test/config.yaml): the stage still writes its
    choice, and the Bento serves the variant as the config writes it (unpinned, the Bento is
    built from tuned.json: tuned_settings, tests/test_tuning.py)."""
    import json

    from servebench.bento import variant_settings
    from servebench.config import load_config

    tuned = json.loads((finished_study / "tuning" / "tuned.json").read_text())
    record = json.loads((finished_study / "bentos" / "optimized.json").read_text())
    config = load_config(REPO_ROOT / ".test" / "config.yaml")
    assert config["tuning"]["pin"] is True
    for key, value in variant_settings(config, "optimized").items():
        if key in tuned["settings"]:
            assert record["settings"][key] == value, key
    with open(finished_study / "tuning" / "tuning.csv", newline="") as handle:
        tried = list(csv.DictReader(handle))
    # one configuration chosen, the one tuned.json names, measured by the whole search; every
    # served configuration was probed unloaded...
    chosen = [row for row in tried if row["outcome"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["configuration"] == tuned["configuration"], tried
    assert float(chosen[0]["saturation_rps"]) > 0
    served = [row for row in tried if row["outcome"] != "pruned"]
    assert served and all(float(row["unloaded_p50_ms"]) > 0 for row in served), served
    # ...and the first round given a loaded step at one screen rate, which orders it
    screened = [row for row in served if row["role"] in ("start", "compared")]
    rates = {row["screen_rate_rps"] for row in screened}
    assert screened and len(rates) == 1 and float(rates.pop()) > 0, screened


def run_dir(results_dir: Path, variant: str, scenario: str, rep: int = 0) -> Path:
    return results_dir / "runs" / "local" / variant / scenario / f"rep{rep}"


def test_study_produced_every_run_and_the_report(snakemake_exe, finished_study):
    for variant in ("baseline", "optimized"):
        for scenario in ("steady", "bursty"):
            folder = run_dir(finished_study, variant, scenario)
            assert (folder / "meta.json").is_file()
            assert (folder / "requests.parquet").is_file()
            assert (folder / "server_metrics.csv").is_file()
        assert (finished_study / "calibration" / "local" / variant / "capacity.json").is_file()
    assert (finished_study / "report.html").stat().st_size > 10_000
    # Every metric of the paper has a value in each scenario (NaN >= 0 is False).
    with open(finished_study / "tables" / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == 4
    for row in summary:
        for metric in ("failure_rate", "latency_min_ms", "latency_mean_ms", "latency_max_ms"):
            assert float(row[metric]) >= 0, (metric, row)
    assert planned_jobs(snakemake_exe, finished_study, "all") == {}


def test_the_ceiling_is_measured_beside_each_calibration(finished_study):
    """The serving efficiency divides the saturation by the model stage's best strategy
    measured again right before and after the variant's search (same cores, same minutes)."""
    with open(finished_study / "tables" / "capacity.csv", newline="") as handle:
        capacity = {row["variant"]: row for row in csv.DictReader(handle)}
    for variant in ("baseline", "optimized"):
        row = capacity[variant]
        before, after = (float(row[f"ceiling_{when}_texts_per_s"]) for when in ("before", "after"))
        assert before > 0 and after > 0, row
        # the table's 6 significant digits (CI: 1940.17 against a mean of 1940.175)
        assert float(row["ceiling_texts_per_s"]) == pytest.approx((before + after) / 2, rel=1e-4)
        assert float(row["model_stage_ceiling_texts_per_s"]) > 0
        assert float(row["serving_efficiency"]) == pytest.approx(
            float(row["saturation_rps"]) / float(row["ceiling_texts_per_s"]), rel=1e-4
        )  # the table's 6 significant digits


def test_forcerun_one_scenario_reruns_it_for_every_variant_only(snakemake_exe, finished_study):
    targets = [
        str(run_dir(finished_study, variant, "bursty") / "meta.json")
        for variant in ("baseline", "optimized")
    ]
    jobs = planned_jobs(snakemake_exe, finished_study, "all", "--forcerun", *targets)
    assert jobs.get("loadtest") == 2
    assert "calibrate" not in jobs and "bento" not in jobs


@pytest.mark.parametrize(
    ("options", "runs"),
    [
        (["--scenario", "bursty"], {("baseline", "bursty"), ("optimized", "bursty")}),
        (["--variant", "optimized"], {("optimized", "steady"), ("optimized", "bursty")}),
    ],
)
def test_servebench_rerun_by_name(servebench_exe, finished_study, tmp_path, options, runs):
    """`servebench rerun --scenario NAME` / `--variant NAME`: those runs and what follows."""
    where = tmp_path / "where.yaml"  # what snakemake_command sets with --config
    bentoml_home = str(finished_study / "bentoml_home")
    where.write_text(f"results_dir: {finished_study}\ndeploy: {{bentoml_home: {bentoml_home}}}\n")
    result = subprocess.run(
        [servebench_exe, "rerun", *options, "--configfile", ".test/config.yaml", str(where)]
        + ["--cores", CORES, "--dry-run", "--", "--quiet", "rules"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = job_counts(result.stdout + result.stderr)
    assert jobs.get("loadtest") == len(runs), jobs
    assert not {"calibrate", "bento", "resilience_run"} & set(jobs), jobs
    forced = result.stdout.split("--forcerun", 1)[1].split("\n", 1)[0].split()
    assert {(Path(path).parts[-4], Path(path).parts[-3]) for path in forced} == runs


@pytest.mark.parametrize("name", ["requests.parquet", "server_metrics.csv"])
def test_a_deleted_file_the_analysis_reads_reruns_its_run(snakemake_exe, finished_study, name):
    """Every file the analysis reads is a declared output of the job that writes it, and `all`
    asks for it: after deleting one, `snakemake -n all` plans that run's load test again (and
    the analysis and report after it), no other load test, calibration or Bento."""
    folder = run_dir(finished_study, "baseline", "steady")
    deleted = folder / name
    kept = deleted.read_bytes()
    deleted.unlink()
    try:
        jobs = planned_jobs(snakemake_exe, finished_study, "all")
        assert jobs.get("loadtest") == 1, jobs
        assert "tables" in jobs and "report_html" in jobs, jobs
        assert not {"calibrate", "bento", "tune", "resilience_run"} & set(jobs), jobs
    finally:
        deleted.write_bytes(kept)
        os.utime(deleted, (folder.stat().st_mtime,) * 2)


def test_one_run_by_its_output_path(snakemake_exe, finished_study):
    target = str(run_dir(finished_study, "optimized", "steady") / "meta.json")
    jobs = planned_jobs(snakemake_exe, finished_study, target, "--forcerun", target)
    assert jobs == {"loadtest": 1}


def test_adding_a_variant_runs_only_the_new_runs(snakemake_exe, finished_study):
    jobs = planned_jobs(
        snakemake_exe,
        finished_study,
        "all",
        config=(
            "variants={'onnx-only': {'runtime': 'onnx'}}",
            "experiment={'variants': ['baseline', 'optimized', 'onnx-only']}",
        ),
    )
    assert jobs.get("loadtest") == 2  # steady and bursty, one repetition each
    assert jobs.get("calibrate") == 1 and jobs.get("bento") == 1
    assert "model_runtime" not in jobs and "model_pytorch" not in jobs


def test_figure_code_change_rerenders_without_load_tests(snakemake_exe, finished_study):
    jobs = planned_jobs(snakemake_exe, finished_study, "report", "--forcerun", "figures")
    assert set(jobs) <= {"figures", "report_html", "report"}
    assert "figures" in jobs
    # A real code change of the figures script: Snakemake's `code` trigger reruns only the
    # figures and what depends on them.
    script = REPO_ROOT / "workflow" / "scripts" / "analysis_figures.py"
    original = script.read_text(encoding="utf-8")
    try:
        script.write_text(original + "\n# a figure code change\n", encoding="utf-8")
        jobs = planned_jobs(snakemake_exe, finished_study, "all")
    finally:
        script.write_text(original, encoding="utf-8")
    assert "loadtest" not in jobs and "calibrate" not in jobs
    assert "figures" in jobs


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_during_a_load_test_leaves_nothing_and_a_rerun_resumes(
    snakemake_exe, finished_study
):
    folder = run_dir(finished_study, "baseline", "steady")
    target = str(folder / "meta.json")
    process = subprocess.Popen(
        snakemake_command(snakemake_exe, finished_study, target, "--forcerun", target),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Wait until the load test is under way: a server answering and Locust running.
        deadline = time.monotonic() + 90
        seen: list[psutil.Process] = []
        while time.monotonic() < deadline:
            seen = _descendants(process.pid)
            names = " ".join(" ".join(p.cmdline()) for p in seen if p.is_running())
            if "locust" in names and "bentoml" in names:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the load test did not start within 90 s")
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(1.0)
    survivors = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [p.cmdline() for p in survivors]
    assert not (folder / "meta.json").exists(), "an interrupted run must not look complete"
    assert planned_jobs(snakemake_exe, finished_study, "all").get("loadtest") == 1

    run_tiny_study(snakemake_exe, finished_study)  # resumes: to completion
    assert (folder / "meta.json").is_file()
