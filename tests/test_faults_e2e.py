"""Each local fault injected into a real server (tiny model, optimized Bento) under open-loop
load: the measured figures in faults.json must tell the story of the fault.

kill-worker, kill-server (restart none) and stall are the tiny study's own resilience runs
(tests/study_testbed.py, .test/config.yaml); kill-server under the supervisor, which the study
does not use, runs here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from servebench.config import load_config
from servebench.jobs.resilience import run_fault
from servebench.matrix import FaultRunSpec

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]


def check_run(out: Path, entry: dict, at_s: float, rate_rps: float, duration_s: float) -> None:
    """What every fault run must show: the fault injected on time, every scheduled request
    accounted for, a healthy server before the fault."""
    assert entry["injected"] and entry["error"] is None, entry
    assert entry["start_s"] == pytest.approx(at_s, abs=0.3)
    # nothing lost on the client side: every scheduled request has an outcome
    assert entry["requests_planned"] > 0.5 * rate_rps * duration_s
    assert entry["requests_lost"] == 0
    assert json.loads((out / "meta.json").read_text())["fault"] == entry["name"]
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["path"]) == {"/readyz", "/livez"}
    assert (probes[probes["t_s"] < at_s]["ok"]).all()  # healthy before the fault
    requests = pd.read_parquet(out / "requests.parquet")
    before = requests[requests["scheduled_s"] < at_s - 0.5]
    assert (before["outcome"] == "ok").all()  # no error before the injection


@pytest.mark.parametrize("fault", ["kill-worker", "kill-server", "stall"])
def test_each_local_fault_of_the_tiny_study(study_run, fault):
    config = load_config(REPO_ROOT / ".test" / "config.yaml")
    resilience = config["resilience"]
    spec, duration_s = resilience["faults"][fault], resilience["duration_s"]
    at_s = spec["at_s"]
    out = study_run[0] / "resilience" / "local" / "optimized" / fault / "rep0"
    faults = json.loads((out / "faults.json").read_text())
    # Not its validity: at the steady rate of a fast tiny baseline (126 req/s in one CI run),
    # the ~5 s of a worker's respawn pile up more requests than the generator's in-flight cap,
    # its sends fall behind the schedule and the run is marked invalid, as it should be.
    assert faults["restart"] == "none"
    entry = faults["faults"][0]
    check_run(out, entry, at_s, faults["rate_rps"], duration_s)
    if fault == "kill-worker":  # BentoML respawns the worker
        assert entry["killed_pids"]
        # the fault is visible: errors after the injection, or answers far beyond the band
        assert (
            entry["requests_not_ok"] > 0
            or entry["peak_latency_ms"] > 5 * entry["pre_fault_band_p99_ms"]
        ), entry
        if entry["requests_not_ok"]:
            assert entry["time_to_first_error_s"] >= 0
        assert entry["recovered"], entry
        assert 0 < entry["time_to_recover_s"] < duration_s - at_s
    elif fault == "kill-server":  # without a restart, it never recovers
        assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
        requests = pd.read_parquet(out / "requests.parquet")
        after = requests[requests["scheduled_s"] > at_s + 0.5]
        assert len(after) and (after["outcome"] != "ok").all()
        assert not entry["recovered"] and entry["time_to_recover_s"] is None
        assert entry["time_to_first_ok_s"] is None
        assert entry["readyz_failed_probes"] > 0 and entry["readyz_back_s"] is None
    else:  # stall: requests sent into it wait for it, corrected latency of about the stall
        assert entry["end_s"] - entry["start_s"] == pytest.approx(spec["duration_s"], abs=0.3)
        assert entry["peak_latency_ms"] > 0.75 * spec["duration_s"] * 1000
        assert entry["recovered"], entry
        assert 0 < entry["time_to_recover_s"] < duration_s - at_s


def test_kill_server_with_supervisor_restart_recovers(testbed, testbed_payloads, tmp_path):
    rate_rps, duration_s, at_s = 10.0, 18.0, 4.0
    config = json.loads(json.dumps(testbed.config))
    config["resilience"].update(
        rate_rps=rate_rps,
        duration_s=duration_s,
        warmup_s=1.0,
        variants={"v": {"variant": "optimized", "restart": "supervisor"}},
        faults={"f": {"kind": "kill-server", "at_s": at_s}},
        # the tiny model answers in milliseconds: jitter alone can exceed a 25 % band
        recovery={"window_s": 2.0, "quiet_s": 3.0, "band_tolerance": 2.0},
    )
    spec = FaultRunSpec("local", "v", "f", 0)
    out = tmp_path / "run"
    result = run_fault(config, spec, testbed.record_paths["optimized"], testbed_payloads, out)
    entry = result["faults"][0]
    check_run(out, entry, at_s, rate_rps, duration_s)
    assert entry["restarted_pid"] and entry["end_s"] > entry["start_s"]
    assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
    assert entry["time_to_first_ok_s"] > 0
    assert entry["recovered"], entry
    assert entry["time_to_recover_s"] >= entry["time_to_first_ok_s"] - 0.5
    assert entry["readyz_failed_probes"] > 0 and entry["readyz_back_s"] > 0
