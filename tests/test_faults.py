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
    for name in faults_of("docker"):  # the docker target's (servebench.faults.docker)
        assert callable(faults.injector(name, "docker"))
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


def test_errors_that_start_late_are_not_a_recovery_before_they_showed():
    # injected at 15 s, the requests fail only from 35 s to 35.5 s (a K3s rollout: the old pod
    # stops once the new one is ready): recovered 1 s window after the last error, ~21.5 s
    log = synthetic_log(duration_s=60.0, errors=(35.0, 35.5))
    figures = measure.measure_fault(
        log, start_s=15.0, planned=len(log), warmup_s=2.0, window_s=1.0, quiet_s=5.0
    )
    assert figures["time_to_first_error_s"] == pytest.approx(20.0, abs=0.01)
    assert figures["time_to_first_bad_window_s"] == pytest.approx(20.1, abs=0.11)
    assert figures["recovered"]
    assert figures["time_to_recover_s"] == pytest.approx(21.5, abs=0.11)
    assert not figures["relapsed"] and figures["relapses"] == 0
    assert figures["first_recovery_s"] == figures["time_to_recover_s"]


def test_a_relapse_after_a_recovery_is_reported_and_recovery_holds_to_the_end():
    # an outage at 15 s, good for 14 s, then a second one at 34 s
    log = synthetic_log(duration_s=60.0, errors=(15.0, 16.0))
    second = (log["scheduled_s"] >= 34.0) & (log["scheduled_s"] < 35.0)
    log.loc[second, "outcome"] = "failed"
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["relapsed"] and figures["relapses"] == 1
    assert figures["first_recovery_s"] == pytest.approx(16.0 + 5.0 - 15.0, abs=0.11)
    assert figures["first_relapse_s"] == pytest.approx(34.0 - 15.0, abs=0.11)
    # the recovery that holds: after the second outage
    assert figures["recovered"]
    assert figures["time_to_recover_s"] == pytest.approx(35.0 + 5.0 - 15.0, abs=0.11)


def test_a_relapse_until_the_end_is_not_recovered():
    log = synthetic_log(duration_s=60.0, errors=(15.0, 16.0))
    log.loc[log["scheduled_s"] >= 40.0, "latency_ms"] = 3000.0  # out of the band to the end
    figures = measure.measure_fault(log, start_s=15.0, planned=len(log), warmup_s=2.0)
    assert figures["relapsed"] and not figures["recovered"]
    assert figures["time_to_recover_s"] is None
    assert "relapsed" in figures["not_recovered_reason"]
    assert figures["first_recovery_s"] == pytest.approx(6.0, abs=0.11)


def test_an_unknown_plan_loses_no_request_by_assumption():
    log = synthetic_log()
    figures = measure.measure_fault(log, start_s=15.0, planned=None, warmup_s=2.0)
    assert figures["requests_planned"] is None and figures["requests_lost"] is None


class _FakeDeployment:
    url = "http://127.0.0.1:9"

    def monitored(self, out_dir):
        import contextlib

        return contextlib.nullcontext()


class _FakeProber:
    def __init__(self, *args, **kwargs):
        pass

    def start(self):
        return self

    def stop(self):
        pass

    def frame(self, t0_wall):
        return pd.DataFrame(columns=["wall_s", "t_s", "path", "status", "ok", "response_ms"])


def _run_with_fakes(monkeypatch, tmp_path, inject, *, write_plan=True, summary_reasons=()):
    """run_fault with the deployment, the load test and the probes replaced (no server, no
    Locust): the load test reports its start so that the fault is due at once, and writes a
    clean request log."""
    import contextlib
    import time

    from servebench.records import RunSummary

    @contextlib.contextmanager
    def fake_deployed(target, record, out):
        yield _FakeDeployment()

    def fake_loadtest(*args, out_dir, run_id, **kwargs):
        out_dir = Path(out_dir)
        (out_dir / "raw").mkdir(parents=True, exist_ok=True)
        at_s = config["resilience"]["faults"]["kill-worker"]["at_s"]
        t0 = time.time() - at_s  # the fault is due now
        # tagged with the run's id, as the real workers do: the fault thread reads only these
        status = {"t0_wall": t0, "run_id": run_id}
        (out_dir / "raw" / "status_worker0.json").write_text(json.dumps(status))
        log = synthetic_log()
        log.to_parquet(out_dir / "requests.parquet")
        if write_plan:
            plan = {"scheduled_s": log["scheduled_s"].tolist()}
            (out_dir / "plan.json").write_text(json.dumps(plan))
        time.sleep(0.5)
        return RunSummary(valid=not summary_reasons, invalid_reasons=list(summary_reasons))

    config = load_config()
    config["deploy"]["ready_timeout_s"] = 1
    config["resilience"]["rate_rps"] = 20.0
    tmp_path.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "optimized.json"
    record.write_text(json.dumps({"variant": "optimized", "tag": "sentiment-optimized:1"}))
    monkeypatch.setattr(resilience_job, "deployed", fake_deployed)
    monkeypatch.setattr(resilience_job, "measured_loadtest", fake_loadtest)
    monkeypatch.setattr(resilience_job, "Prober", _FakeProber)
    monkeypatch.setattr(resilience_job, "injector", lambda kind, target: inject)
    monkeypatch.setattr(resilience_job, "FAULT_JOIN_EXTRA_S", 0.1, raising=False)
    spec = FaultRunSpec("local", "optimized", "kill-worker", 0)
    out = tmp_path / "run"
    result = resilience_job.run_fault(config, spec, record, tmp_path / "payloads.csv", out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["valid"] == result["valid"] and meta["problems"] == result["problems"]
    return result


def test_a_fault_whose_injector_never_returns_makes_the_run_invalid(monkeypatch, tmp_path):
    import threading

    release = threading.Event()
    try:
        result = _run_with_fakes(monkeypatch, tmp_path, lambda context: (release.wait(30), {})[1])
    finally:
        release.set()
    entry = result["faults"][0]
    assert not entry["injected"] and not result["valid"]
    assert any("injector had not returned" in p for p in result["problems"]), result


def test_a_fault_that_fires_on_a_clean_run_is_valid(monkeypatch, tmp_path):
    result = _run_with_fakes(monkeypatch, tmp_path, lambda context: {"killed_pids": [1]})
    entry = result["faults"][0]
    assert entry["injected"] and entry["requests_lost"] == 0
    assert result["valid"] and result["problems"] == []


def test_an_unknown_planned_count_or_an_invalid_load_makes_the_run_invalid(monkeypatch, tmp_path):
    fires = lambda context: {"killed_pids": [1]}  # noqa: E731
    result = _run_with_fakes(monkeypatch, tmp_path / "a", fires, write_plan=False)
    assert result["faults"][0]["requests_lost"] is None and not result["valid"]
    assert any("planned request count is unknown" in p for p in result["problems"])
    result = _run_with_fakes(monkeypatch, tmp_path / "b", fires, summary_reasons=("late",))
    assert result["problems"] == ["load: late"] and not result["valid"]


def test_a_status_file_of_another_run_is_not_this_runs_start(tmp_path):
    # A Locust process that outlived its driver could write into the folder of the next run of
    # the same path: only the statuses tagged with this run's id are read.
    (tmp_path / "status_worker0.json").write_text(json.dumps({"t0_wall": 5.0, "run_id": "old"}))
    assert resilience_job.read_t0_wall(tmp_path, "new") is None
    (tmp_path / "status_worker1.json").write_text(json.dumps({"t0_wall": 7.0, "run_id": "new"}))
    assert resilience_job.read_t0_wall(tmp_path, "new") == 7.0
