"""A resilience run on the K3s target through servebench's real code path: run_fault deploys
with the K3s driver, sends the open-loop load (Locust, a subprocess) through the port-forward,
injects the K3s fault with the registered injector at its time, measures, collects and tears
down. The cluster is the fake kubectl/k3s of k3s_fakes; its port-forward forwards to a small
stub "pod" served by this test, and `kubectl delete pod` ends that port-forward and keeps the
new pod from running for POD_RESTART_S, as on a cluster. No real cluster is involved."""

from __future__ import annotations

import copy
import csv
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from k3s_fakes import install_fakes, recorded, write_spec
from loadgen_tolerance import SEND_LAG_P99_MAX_MS

from servebench.analysis.resilience import resilience_table
from servebench.config import config_errors, deep_merge, load_config
from servebench.jobs.resilience import run_fault
from servebench.matrix import FaultRunSpec

pytestmark = pytest.mark.e2e

RATE_RPS = 10.0
DURATION_S = 12.0
AT_S = 3.0
POD_RESTART_S = 2.0
_USABLE = sorted(os.sched_getaffinity(0))
TIMELINE_KEYS = (
    "time_to_first_error_s",
    "time_to_first_ok_s",
    "time_to_recover_s",
    "not_recovered_reason",
    "relapses",
    "pre_fault_band_p99_ms",
    "peak_latency_ms",
)
CPUS = {"server": [_USABLE[0]], "loadgen": [_USABLE[-1]]}


class Pod(BaseHTTPRequestHandler):
    """The serving container as the load generator and the probes see it."""

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, b"bentoml_service_request_total 1\n", "text/plain")
        else:
            self._send(200 if self.path in ("/readyz", "/livez") else 404, b"ok", "text/plain")

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        answers = [{"label": "neutral", "score": 1.0, "scores": {"neutral": 1.0}} for _ in texts]
        self._send(200, json.dumps(answers).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pod():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pod)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def cluster(tmp_path, monkeypatch, pod):
    """Fake kubectl/k3s/docker/bentoml first on PATH, the port-forward going to the pod."""
    log_path = tmp_path / "fake-calls.jsonl"
    spec_path = tmp_path / "fake-spec.json"
    for name, value in install_fakes(tmp_path / "bin", log_path, spec_path).items():
        monkeypatch.setenv(name, value)

    def spec(**values):
        write_spec(spec_path, {"upstream": pod, **values})

    spec(pod_restart_s=POD_RESTART_S)
    return log_path, spec


@pytest.fixture
def payloads(tmp_path):
    path = tmp_path / "payloads.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for index in range(20):
            writer.writerow([f"text number {index}, good or bad"])
    return path


def k3s_config(kind: str, duration_s: float = DURATION_S, at_s: float = AT_S) -> dict:
    config = deep_merge(
        load_config(),
        {"deploy": {"target": "k3s", "k3s": {"k3s_command": "k3s", "monitor_interval_s": 1}}},
    )
    config = copy.deepcopy(config)
    config["cpus"] = CPUS
    # A test of the fault's path, not of statistics: a few seconds at RATE_RPS are fewer than
    # a study's measurement.min_requests (100), which would make every run here invalid.
    config["measurement"]["min_requests"] = 20
    config["loadgen"]["validity"]["send_lag_p99_max_ms"] = SEND_LAG_P99_MAX_MS  # not its timing
    config["resilience"].update(
        rate_rps=RATE_RPS,
        duration_s=duration_s,
        warmup_s=1.0,
        variants={"optimized": {"variant": "optimized", "restart": "none"}},
        faults={"f": {"kind": kind, "at_s": at_s}},
        # The stub pod answers in a few ms, so a band of 3 x its p99 is broken by any scheduling
        # hiccup of the proxy chain (seen once in CI: "not recovered"); the test is of the
        # fault's path, so the band is wide and the run leaves the quiet period room to end.
        recovery={"window_s": 1.0, "quiet_s": 2.0, "band_tolerance": 9.0},
    )
    assert config_errors(config) == []
    return config


def run(config, tmp_path, payloads):
    record = tmp_path / "optimized.json"
    record.write_text(
        json.dumps(
            {
                "variant": "optimized",
                "tag": "sentiment-optimized:0123456789abcdef",
                "bentoml_home": str(tmp_path / "bentoml_home"),
                "settings": {"workers": 1},
            }
        )
    )
    out = tmp_path / "resilience" / "k3s" / "optimized" / "f" / "rep0"
    spec = FaultRunSpec("k3s", "optimized", "f", 0)
    return run_fault(config, spec, record, payloads, out), out


def test_delete_pod_under_load_on_the_k3s_target(cluster, payloads, tmp_path):
    log_path, _ = cluster
    result, out = run(k3s_config("delete-pod"), tmp_path, payloads)
    entry = result["faults"][0]
    assert entry["injected"] and entry["error"] is None, result
    assert result["valid"] and result["target"] == "k3s", result["problems"]
    assert entry["kind"] == "delete-pod"
    assert entry["start_s"] == pytest.approx(AT_S, abs=0.3)
    # The registered injector ran the driver's command on the run's deployment.
    commands = [step["command"] for step in entry["commands"]]
    assert any(command[-3:-1] == ["pod", "sentiment-7d9f-abcde"] for command in commands)
    # Nothing lost; every request before the fault answered.
    assert entry["requests_planned"] > 0.5 * RATE_RPS * DURATION_S
    assert entry["requests_lost"] == 0
    requests = pd.read_parquet(out / "requests.parquet")
    assert (requests[requests["scheduled_s"] < AT_S - 0.3]["outcome"] == "ok").all()
    # The outage: errors at once, the first ok answer once the new pod runs, then recovery.
    assert entry["requests_not_ok"] > 0 and set(entry["not_ok_by_outcome"]) <= {
        "failed",
        "timeout",
    }
    assert 0 <= entry["time_to_first_error_s"] < 1.0
    assert entry["time_to_first_ok_s"] is not None, entry  # the port-forward came back
    assert POD_RESTART_S - 0.3 <= entry["time_to_first_ok_s"] < DURATION_S - AT_S
    timeline = {key: entry[key] for key in TIMELINE_KEYS}
    assert entry["recovered"], timeline
    assert entry["time_to_recover_s"] >= entry["time_to_first_ok_s"] - 1.0
    assert entry["peak_latency_ms"] > 0
    assert entry["readyz_failed_probes"] > 0 and entry["readyz_back_s"] >= POD_RESTART_S - 0.5
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["path"]) == {"/readyz", "/livez"}
    assert probes[probes["t_s"] < AT_S]["ok"].all()
    # What the K3s driver collected, in faults.json and in the run folder.
    facts = result["k3s"]
    assert facts["port_forward_restarts"] >= 2  # one failed start while the pod was pending
    assert (facts["replicas"], facts["pdb_min_available"], facts["access"]) == (
        1,
        None,  # the default PDB: maxUnavailable 1
        "port-forward",
    )
    assert facts["restarts"] == 0 and facts["events"] == 2 and facts["pods"]
    for name in (
        "summary.json",
        "plan.json",
        "server_metrics.csv",
        "resources.csv",
        "server.log",
        "deploy.log",
        "k3s.json",
        "k3s_pods.csv",
        "k3s_events.json",
        "k3s/manifests.yaml",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["target"] == "k3s" and meta["valid"] is True
    assert meta["k3s_settings"]["replicas"] == 1
    # The order of the cluster's commands: deploy, fault, collect, teardown.
    steps = [" ".join(call) for call in recorded(log_path)]
    apply = next(i for i, step in enumerate(steps) if "kubectl apply -k" in step)
    delete = next(i for i, step in enumerate(steps) if " delete pod " in step)
    events = next(i for i, step in enumerate(steps) if " get events " in step)
    assert apply < delete < events and "kubectl delete -k" in steps[-1], steps
    # The table row of the run.
    table = resilience_table([out])
    assert table.iloc[0]["target"] == "k3s" and table.iloc[0]["requests_not_ok"] > 0


def test_a_failed_k3s_fault_is_recorded_and_the_load_runs_on(cluster, payloads, tmp_path):
    log_path, spec = cluster
    spec(rules=[{"match": "jsonpath={.items[0]", "rc": 1, "stderr": "Forbidden\n"}])
    result, out = run(k3s_config("delete-pod", duration_s=5.0, at_s=2.0), tmp_path, payloads)
    entry = result["faults"][0]
    assert not entry["injected"] and not result["valid"]
    assert "step 'fault-delete-pod' failed" in entry["error"] and "Forbidden" in entry["error"]
    # The fault's failure is the problem; the generator's own validity (send lag on a busy
    # CI machine) may add "load: ..." reasons, which are not what this test is about.
    assert [p for p in result["problems"] if not p.startswith("load: ")] == [entry["error"]]
    # The load ran on, unharmed, and the deployment was collected and torn down.
    requests = pd.read_parquet(out / "requests.parquet")
    assert len(requests) > 0.5 * 5.0 * RATE_RPS and (requests["outcome"] == "ok").all()
    assert not any("delete" in call and "pod" in call for call in recorded(log_path))
    assert (out / "k3s_events.json").is_file() and "delete -k" in " ".join(recorded(log_path)[-1])
