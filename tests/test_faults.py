"""Unit tests of servebench.faults: the measured figures on synthetic request logs, the fault
registry, the resilience matrix and config checks, the table and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servebench import faults
from servebench.analysis.resilience import resilience_outputs
from servebench.config import config_errors, load_config
from servebench.fault_kinds import FAULT_KINDS, faults_for_target, faults_of
from servebench.faults import measure
from servebench.jobs import resilience as resilience_job
from servebench.layout import resilience_figure_names
from servebench.matrix import FaultRunSpec, fault_seed, resilience_fault_names, resilience_matrix

REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_log(
    duration_s: float = 40.0,
    rate_rps: float = 20.0,
    base_ms: float = 20.0,
    errors: tuple[float, float] | None = None,
    slow: tuple[float, float, float] | None = None,
) -> pd.DataFrame:
    """A request log on a regular schedule: `errors` (from, to) scheduled times fail,
    `slow` (from, to, latency_ms) are answered late."""
    scheduled = np.arange(0.0, duration_s, 1.0 / rate_rps)
    latency = np.full(len(scheduled), base_ms)
    outcome = np.array(["ok"] * len(scheduled), dtype=object)
    if slow is not None:
        inside = (scheduled >= slow[0]) & (scheduled < slow[1])
        latency[inside] = slow[2]
    if errors is not None:
        inside = (scheduled >= errors[0]) & (scheduled < errors[1])
        outcome[inside] = "failed"
        latency[inside] = 1.0
    done = scheduled + latency / 1000.0
    return pd.DataFrame(
        {
            "scheduled_s": scheduled,
            "sent_s": scheduled + 0.0005,
            "done_s": done,
            "latency_ms": latency,
            "outcome": pd.array(outcome, dtype="string"),
        }
    )


def test_no_effect_recovers_at_once_and_nothing_is_lost():
    log = synthetic_log()
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["requests_lost"] == 0 and figures["requests_not_ok"] == 0
    assert figures["time_to_first_error_s"] is None
    assert figures["recovered"] and figures["time_to_recover_s"] == pytest.approx(0.0)
    assert figures["time_to_first_ok_s"] == pytest.approx(0.02, abs=0.005)
    assert figures["pre_fault_band_p99_ms"] == pytest.approx(20.0 * 1.25)


def test_an_outage_recovers_after_the_last_error_plus_the_window():
    # failures scheduled in [15, 18): the rolling 5 s window is clean from 23 s on
    log = synthetic_log(errors=(15.0, 18.0))
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["requests_not_ok"] == 60
    assert figures["not_ok_by_outcome"] == {"failed": 60}
    assert figures["time_to_first_error_s"] == pytest.approx(0.001, abs=0.01)
    assert figures["time_to_first_ok_s"] == pytest.approx(3.0, abs=0.1)
    assert figures["recovered"]
    assert figures["time_to_recover_s"] == pytest.approx(8.0, abs=0.2)


def test_a_fault_that_shows_late_counts_the_first_ok_from_its_first_error():
    # injected at 15 s, but the requests fail only from 16 s (a pod deleted serves on a while)
    log = synthetic_log(errors=(16.0, 18.0))
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["time_to_first_error_s"] == pytest.approx(1.0, abs=0.01)
    assert figures["time_to_first_ok_s"] == pytest.approx(3.0, abs=0.1)


def test_slow_answers_count_until_the_p99_is_back_in_the_band():
    # no error, but 2 s answers for 3 s: recovery when the window no longer holds them
    log = synthetic_log(slow=(15.0, 18.0, 2000.0))
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["requests_not_ok"] == 0
    assert figures["peak_latency_ms"] == pytest.approx(2000.0)
    assert figures["time_to_recover_s"] == pytest.approx(8.0, abs=0.2)


def test_an_outage_until_the_end_is_not_recovered():
    log = synthetic_log(errors=(15.0, 40.0))
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log) + 3, warmup_s=2.0)
    assert not figures["recovered"] and figures["time_to_recover_s"] is None
    assert "ended" in figures["not_recovered_reason"]
    assert figures["time_to_first_ok_s"] is None
    assert figures["requests_lost"] == 3  # scheduled but never recorded


def test_recovery_needs_the_whole_quiet_period():
    # a second, short outage 8 s after the first resets the clock
    log = synthetic_log(errors=(15.0, 16.0))
    second = (log["scheduled_s"] >= 24.0) & (log["scheduled_s"] < 24.5)
    log.loc[second, "outcome"] = "timeout"
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["not_ok_by_outcome"] == {"failed": 20, "timeout": 10}
    assert figures["time_to_recover_s"] == pytest.approx(24.5 + 5.0 - 15.0, abs=0.2)


def test_without_pre_fault_requests_there_is_no_band():
    log = synthetic_log()
    figures = measure.measure_fault(log, start_s=0.0, planned=len(log))
    assert not figures["recovered"] and "band" in figures["not_recovered_reason"]


def test_probe_figures():
    probes = pd.DataFrame(
        {
            "t_s": [14.0, 15.2, 16.2, 17.2, 18.2, 14.0, 15.2, 16.2],
            "path": ["/readyz"] * 5 + ["/livez"] * 3,
            "ok": [True, False, False, True, True, True, False, True],
        }
    )
    figures = measure.probe_figures(probes, 15.0)
    assert figures["readyz_failed_probes"] == 2 and figures["livez_failed_probes"] == 1
    assert figures["readyz_first_failure_s"] == pytest.approx(0.2)
    assert figures["readyz_back_s"] == pytest.approx(2.2)


def test_rolling_p99_windows():
    scheduled = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    latency = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p99 = measure.rolling_p99_ms(scheduled, latency, np.array([0.0, 1.0, 2.5]), 1.0)
    assert np.isnan(p99[0])
    assert p99[1] == pytest.approx(np.percentile([1.0, 2.0], 99))
    assert p99[2] == pytest.approx(np.percentile([4.0, 5.0], 99))


def test_registry_knows_the_faults_of_both_targets():
    for name in ("kill-worker", "kill-server", "stall"):
        assert callable(faults.injector(name, "local"))
    for name in ("delete-pod", "rollout-restart", "kill-containerd", "restart-k3s"):
        assert callable(faults.injector(name, "k3s"))  # the K3s driver's commands
    assert faults_of("k3s") == ["delete-pod", "rollout-restart", "kill-containerd", "restart-k3s"]
    # Every kind of the vocabulary has an injector, and nothing else does.
    assert set(faults.INJECTORS) == set(FAULT_KINDS)
    # A fault of one target on the other: what it needs, and what the target has instead.
    with pytest.raises(faults.FaultError) as error:
        faults.injector("kill-worker", "k3s")
    message = str(error.value)
    assert "local target only" in message and "bentoml serve" in message
    assert "faults of 'k3s': delete-pod, rollout-restart" in message
    with pytest.raises(faults.FaultError, match="k3s target only.*K3s cluster.*kill-worker"):
        faults.injector("delete-pod", "local")
    with pytest.raises(faults.FaultError, match="unknown fault"):
        faults.injector("meteor", "local")
    with pytest.raises(ValueError, match="not a fault kind"):
        faults.register_injector("meteor", lambda context: {})


def test_default_matrix_and_config_checks():
    config = load_config()
    specs = resilience_matrix(config)
    assert [(s.variant, s.fault, s.repetition) for s in specs] == [
        ("optimized", "kill-worker", 0),
        ("optimized", "kill-server", 0),
        ("optimized", "stall", 0),
    ]
    assert config_errors(config) == []
    assert specs[0].path("results") == Path("results/resilience/local/optimized/kill-worker/rep0")
    # the same schedule for every variant of a (fault, repetition)
    assert fault_seed(config, "stall", 0) == fault_seed(config, "stall", 0)
    assert fault_seed(config, "stall", 0) != fault_seed(config, "stall", 1)
    bad = json.loads(json.dumps(config))
    bad["resilience"]["faults"]["late"] = {"kind": "stall", "at_s": 500}
    bad["resilience"]["variants"]["x"] = {"variant": "nope"}
    # a fault skipped on this target is not checked against the run's length
    bad["resilience"]["faults"]["late-pod"] = {"kind": "delete-pod", "at_s": 500}
    problems = config_errors(bad)
    assert len(problems) == 2, problems
    assert "late.at_s" in problems[1] and "late-pod" not in " ".join(problems)
    # config.yaml's K3s faults are skipped on the local target; on the K3s target they run,
    # and the local faults a K3s profile inherits from config.yaml are skipped there
    k3s = json.loads(json.dumps(config))
    k3s["resilience"]["faults"]["pod"] = {"kind": "delete-pod", "at_s": 5}
    assert config_errors(k3s) == []
    assert "pod" not in faults_for_target(k3s)
    k3s["deploy"]["target"] = "k3s"
    k3s_faults = ["delete-pod", "rollout-restart", "kill-containerd", "restart-k3s", "pod"]
    assert faults_for_target(k3s) == k3s_faults
    assert [s.fault for s in resilience_matrix(k3s)] == k3s_faults
    assert config_errors(k3s) == []
    assert resilience_figure_names(resilience_fault_names(k3s)) == [
        f"resilience_{f}" for f in k3s_faults
    ]
    off = json.loads(json.dumps(config))
    off["resilience"]["enabled"] = False
    assert (
        resilience_matrix(off) == [] and resilience_figure_names(resilience_fault_names(off)) == []
    )


@pytest.mark.parametrize(
    ("target", "kept", "needed"),
    [("k3s", ("kill-worker", "stall"), "delete-pod"), ("local", ("delete-pod",), "kill-worker")],
)
def test_a_stage_without_a_fault_of_its_target_is_refused(target, kept, needed):
    config = load_config()
    config["deploy"]["target"] = target
    config["resilience"]["faults"] = {
        name: fault for name, fault in config["resilience"]["faults"].items() if name in kept
    }
    assert resilience_matrix(config) == []
    problems = config_errors(config)
    assert len(problems) == 1, problems
    other = "local" if target == "k3s" else "k3s"
    assert f"none applies to deploy.target {target!r}" in problems[0]
    assert all(f"{name}: {other} only" in problems[0] for name in kept)
    assert needed in problems[0] and "resilience.enabled: false" in problems[0]
    config["resilience"]["enabled"] = False
    assert config_errors(config) == []


def test_a_fault_run_of_another_target_is_refused_before_deploying(tmp_path):
    config = load_config()
    config["deploy"]["target"] = "k3s"
    record = tmp_path / "optimized.json"
    record.write_text(json.dumps({"variant": "optimized", "tag": "sentiment-optimized:1"}))
    out = tmp_path / "run"
    spec = FaultRunSpec("k3s", "optimized", "kill-worker", 0)
    result = resilience_job.run_fault(config, spec, record, tmp_path / "payloads.csv", out)
    entry = result["faults"][0]
    assert not result["valid"] and not entry["injected"]
    assert "'kill-worker' applies to the local target only" in entry["error"]
    assert result["problems"] == [entry["error"]]
    assert not (out / "deploy.log").exists()
    # The declared outputs exist, empty, so that the workflow keeps the failed run as data.
    assert len(pd.read_parquet(out / "requests.parquet")) == 0
    assert json.loads((out / "meta.json").read_text())["valid"] is False


def test_two_variants_interleave_across_repetitions():
    config = load_config()
    config["resilience"]["variants"] = {
        "one": {"variant": "optimized", "restart": "none"},
        "two": {"variant": "optimized", "restart": "supervisor"},
    }
    config["resilience"]["repetitions"] = 2
    config["resilience"]["faults"] = {"kill-server": {"kind": "kill-server", "at_s": 15}}
    order = [(s.variant, s.repetition) for s in resilience_matrix(config)]
    assert order == [("one", 0), ("two", 0), ("two", 1), ("one", 1)]


def test_table_and_timeline_from_faults_json(tmp_path):
    config = load_config()
    config["results_dir"] = str(tmp_path)
    spec = resilience_matrix(config)[0]
    run = spec.path(tmp_path)
    run.mkdir(parents=True)
    log = synthetic_log(errors=(15.0, 18.0))
    log.to_parquet(run / "requests.parquet")
    entry = resilience_job.fault_entry(
        "kill-worker",
        "kill-worker",
        {"at_s": 15},
        "none",
        {"injected_wall_s": 1015.0, "killed_pids": [4]},
        1000.0,
        None,
    )
    assert entry["start_s"] == entry["end_s"] == 15.0 and entry["killed_pids"] == [4]
    entry.update(measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0))
    data = {"faults": [entry], "variant": "optimized", "fault": "kill-worker", "restart": "none"}
    (run / "faults.json").write_text(json.dumps({**data, "repetition": 0, "valid": True}))
    table_path = tmp_path / "tables" / "resilience.csv"
    written = resilience_outputs(config, table_path, tmp_path / "figures")
    table = pd.read_csv(table_path)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["fault"] == "kill-worker" and row["requests_not_ok"] == 60
    assert row["time_to_recover_s"] == pytest.approx(8.0, abs=0.2)
    assert row["not_ok_by_outcome"] == "failed: 60"
    for paths in written["figures"].values():
        assert all(Path(p).is_file() and Path(p).stat().st_size > 1000 for p in paths)
    # the report's section: the table and one embedded timeline per fault
    from servebench.report import html, items

    inputs = html.ReportInputs(
        results_dir=tmp_path, tables_dir=tmp_path / "tables", figures_dir=tmp_path / "figures"
    )
    section = html.resilience_context(config, inputs, items.REPORT_DIR, items.load_items())
    assert section is not None and len(section["table"].rows) == 1
    assert [f["id"] for f in section["figures"]] == [
        "resilience_kill-worker",
        "resilience_kill-server",
        "resilience_stall",
    ]
    assert all(f["src"].startswith("data:image/png;base64,") for f in section["figures"])
