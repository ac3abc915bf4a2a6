"""Each local fault injected into a real server (tiny model, optimized Bento) under open-loop
load: the measured figures in faults.json must tell the story of the fault."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from servebench.jobs.resilience import run_fault
from servebench.matrix import FaultRunSpec

pytestmark = pytest.mark.e2e

RATE_RPS = 10.0
DURATION_S = 18.0
AT_S = 4.0


def run(testbed, testbed_payloads, tmp_path, kind, restart="none", **params):
    config = json.loads(json.dumps(testbed.config))
    config["resilience"].update(
        rate_rps=RATE_RPS,
        duration_s=DURATION_S,
        warmup_s=1.0,
        variants={"v": {"variant": "optimized", "restart": restart}},
        faults={"f": {"kind": kind, "at_s": AT_S, **params}},
        # the tiny model answers in milliseconds: jitter alone can exceed a 25 % band
        recovery={"window_s": 2.0, "quiet_s": 3.0, "band_tolerance": 2.0},
    )
    spec = FaultRunSpec("local", "v", "f", 0)
    out = tmp_path / "run"
    result = run_fault(config, spec, testbed.record_paths["optimized"], testbed_payloads, out)
    entry = result["faults"][0]
    assert entry["injected"] and entry["error"] is None, result
    assert entry["start_s"] == pytest.approx(AT_S, abs=0.3)
    # nothing lost on the client side: every scheduled request has an outcome
    assert entry["requests_planned"] > 0.5 * RATE_RPS * DURATION_S
    assert entry["requests_lost"] == 0
    assert json.loads((out / "meta.json").read_text())["fault"] == "f"
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["path"]) == {"/readyz", "/livez"}
    assert (probes[probes["t_s"] < AT_S]["ok"]).all()  # healthy before the fault
    requests = pd.read_parquet(out / "requests.parquet")
    before = requests[requests["scheduled_s"] < AT_S - 0.5]
    assert (before["outcome"] == "ok").all()  # no error before the injection
    return entry, requests


def test_kill_worker_is_respawned_and_recovers(testbed, testbed_payloads, tmp_path):
    entry, _ = run(testbed, testbed_payloads, tmp_path, "kill-worker")
    assert entry["killed_pids"]
    # the fault is visible: errors after the injection, or answers far beyond the band
    assert (
        entry["requests_not_ok"] > 0
        or entry["peak_latency_ms"] > 5 * entry["pre_fault_band_p99_ms"]
    ), entry
    if entry["requests_not_ok"]:
        assert entry["time_to_first_error_s"] >= 0
    assert entry["recovered"], entry
    assert 0 < entry["time_to_recover_s"] < DURATION_S - AT_S


def test_kill_server_without_restart_never_recovers(testbed, testbed_payloads, tmp_path):
    entry, requests = run(testbed, testbed_payloads, tmp_path, "kill-server", restart="none")
    assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
    after = requests[requests["scheduled_s"] > AT_S + 0.5]
    assert len(after) and (after["outcome"] != "ok").all()
    assert not entry["recovered"] and entry["time_to_recover_s"] is None
    assert entry["time_to_first_ok_s"] is None
    assert entry["readyz_failed_probes"] > 0 and entry["readyz_back_s"] is None


def test_kill_server_with_supervisor_restart_recovers(testbed, testbed_payloads, tmp_path):
    entry, _ = run(testbed, testbed_payloads, tmp_path, "kill-server", restart="supervisor")
    assert entry["restarted_pid"] and entry["end_s"] > entry["start_s"]
    assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
    assert entry["time_to_first_ok_s"] > 0
    assert entry["recovered"], entry
    assert entry["time_to_recover_s"] >= entry["time_to_first_ok_s"] - 0.5
    assert entry["readyz_failed_probes"] > 0 and entry["readyz_back_s"] > 0


def test_stall_delays_answers_then_recovers(testbed, testbed_payloads, tmp_path):
    entry, _ = run(testbed, testbed_payloads, tmp_path, "stall", duration_s=2.0)
    assert entry["end_s"] - entry["start_s"] == pytest.approx(2.0, abs=0.3)
    # requests sent into the stall wait for it: corrected latency of about the stall
    assert entry["peak_latency_ms"] > 1500
    assert entry["recovered"], entry
    assert 0 < entry["time_to_recover_s"] < DURATION_S - AT_S
