"""deploy.target external: a study against servers that already run, one URL per variant.

End to end: two instances of the bundled test server stand in for two model servers of known
speed (/classify_batch served one request at a time, 10 ms and 5 ms each; only the first has
/metrics), and the real workflow (`snakemake all`) calibrates, runs the scenario, runs the
resilience probes (every configured fault skipped with its reason) and writes the report,
building and deploying nothing. The configuration rules of the target are checked on their own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from servebench.config import (
    DEFAULT_CONFIG_PATH,
    config_errors,
    deep_merge,
    load_config,
    load_yaml,
)
from servebench.fault_kinds import PROBES_ONLY
from servebench.matrix import resilience_matrix, run_matrix
from servebench.settings import ExternalTarget, deploy_target, study_variants

REPO_ROOT = Path(__file__).resolve().parents[1]
_USABLE = os.sched_getaffinity(0)
SERVER_CPUS = "0" if {0, 1} <= _USABLE else ""
# Service time of each stand-in server (ms per request, one at a time).
SERVICE_MS = {"slow": 10, "fast": 5}


def external_profile(urls: dict[str, str], results_dir: Path | str) -> dict:
    """A tiny external study over .test/config.yaml: one short scenario, a short search."""
    return {
        "results_dir": str(results_dir),
        "deploy": {"target": "external", "external": {"urls": urls}},
        "experiment": {
            "reference_variant": "slow",
            "variants": ["slow", "fast"],
            "scenarios": ["steady"],
        },
        "scenarios": {"steady": {"duration_s": 4, "warmup_s": 1, "repetitions": 1}},
        "data": {"n_requests": 50},
        "measurement": {"min_requests": 50},
        # A coarse search: the plumbing, not the precision, is what this checks.
        "calibration": {
            "min_step_requests": 50,
            "slo_verdict_requests": 50,
            "min_step_duration_s": 1.0,
            "step_warmup_s": 0.3,
            "bracket_precision": 0.5,
            "max_steps": 6,
        },
        "resilience": {
            "variants": {"fast": {"variant": "fast"}},
            "duration_s": 5,
            "warmup_s": 1,
        },
    }


def _config(profile: dict, tmp_path: Path) -> dict:
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump(profile))
    return load_config(REPO_ROOT / ".test" / "config.yaml", path)


URLS = {"slow": "http://127.0.0.1:1", "fast": "http://127.0.0.1:2"}


def test_external_variants_need_only_a_url(tmp_path):
    config = _config(external_profile(URLS, tmp_path / "r"), tmp_path)
    assert {"slow", "fast"} <= set(study_variants(config))
    target = deploy_target(config, "fast")
    assert isinstance(target, ExternalTarget)
    assert target.url == URLS["fast"] and target.cpus == ()  # only the generator is measured
    assert {spec.variant for spec in run_matrix(config)} == {"slow", "fast"}
    # No fault kind acts on an external server: one probes-only run per resilience variant.
    assert [(s.variant, s.fault) for s in resilience_matrix(config)] == [("fast", PROBES_ONLY)]


def test_a_variant_without_url_is_one_clear_error(tmp_path):
    raw = deep_merge(
        deep_merge(load_yaml(DEFAULT_CONFIG_PATH), load_yaml(REPO_ROOT / ".test" / "config.yaml")),
        external_profile({"slow": URLS["slow"]}, tmp_path / "r"),
    )
    problems = config_errors(raw)
    assert len(problems) == 1, problems
    assert "'deploy.external.urls': no URL for variant 'fast'" in problems[0]
    raw["deploy"]["external"]["urls"]["fast"] = "not a url"
    assert any("deploy.external.urls.fast" in problem for problem in config_errors(raw))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_servers():
    """The stand-in servers: slow (10 ms, with /metrics) and fast (5 ms, without)."""
    processes, urls = [], {}
    for name, service_ms in SERVICE_MS.items():
        port = _free_port()
        command = [
            sys.executable, "-m", "servebench.loadgen.testserver", "--port", str(port),
            "--classify-ms", str(service_ms), *(["--metrics"] if name == "slow" else []),
            *(["--cpus", SERVER_CPUS] if SERVER_CPUS else []),
        ]  # fmt: skip
        processes.append(subprocess.Popen(command))
        urls[name] = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    for url in urls.values():
        port = int(url.rsplit(":", 1)[1])
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the test server at {url} did not start")
                time.sleep(0.1)
    yield urls
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.e2e
def test_a_study_against_two_running_servers(two_servers, tmp_path, snakemake_exe):
    results = tmp_path / "results"
    profile = tmp_path / "external.yaml"
    profile.write_text(yaml.safe_dump(external_profile(two_servers, results)))
    done = subprocess.run(
        [snakemake_exe, "--cores", "4", "all", "--configfile", ".test/config.yaml", str(profile)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # Nothing built: no model stage, no Bento, no Bento store.
    for absent in ("model", "bentos", "bentoml_home"):
        assert not (results / absent).exists(), absent
    # Each variant was calibrated against its own server (10 ms vs 5 ms a request).
    capacity = {
        name: json.loads((results / "calibration/external" / name / "capacity.json").read_text())
        for name in SERVICE_MS
    }
    for name, answers in capacity.items():
        assert answers["url"] == two_servers[name] and answers["saturation_rps"], answers
    assert capacity["slow"]["unloaded_p50_ms"] > capacity["fast"]["unloaded_p50_ms"] + 3
    for name in SERVICE_MS:
        run = results / "runs/external" / name / "steady/rep0"
        meta = json.loads((run / "meta.json").read_text())
        assert meta["valid"], meta["invalid_reasons"]
        assert meta["url"] == two_servers[name] and meta["bento_tag"] is None
        notes = " ".join(meta["deployment_notes"])
        assert "resources.csv is empty" in notes
        assert len(pd.read_csv(run / "resources.csv")) == 0
        metrics = pd.read_csv(run / "server_metrics.csv")
        if name == "slow":  # /metrics scraped once a second
            assert "bentoml_service_request_total" in set(metrics["metric"])
        else:
            assert metrics.empty and "/metrics answered HTTP 404" in notes
    faults = json.loads(
        (results / "resilience/external/fast" / PROBES_ONLY / "rep0/faults.json").read_text()
    )
    assert faults["valid"], faults["problems"]
    skipped = {fault["name"]: fault["reason"] for fault in faults["skipped_faults"]}
    assert "kill-worker" in skipped and "not to deploy.target 'external'" in skipped["kill-worker"]
    probes = pd.read_csv(results / "resilience/external/fast" / PROBES_ONLY / "rep0/probes.csv")
    assert set(probes["path"]) == {"/readyz", "/livez"} and probes["ok"].all()
    runs = pd.read_csv(results / "tables/runs.csv")
    assert len(runs) == 2 and runs["valid"].all()
    page = (results / "report.html").read_text(encoding="utf-8")
    assert two_servers["fast"] in page and "server (deploy.external.urls)" in page
    assert "Probes only, no fault" in page
    assert (results / "study.ok").is_file()


@pytest.mark.e2e
@pytest.mark.parametrize(("send_lag_p99_max_ms", "attempts"), [(1e-6, 2), (1000.0, 1)])
def test_a_run_the_generator_made_invalid_is_measured_again(
    two_servers, tmp_path, send_lag_p99_max_ms, attempts
):
    """A real scenario run against the fast stand-in server: one whose generator sends late
    (here a send-lag bound no run can meet) is measured again, on the same seed, up to
    measurement.max_attempts; meta.json keeps the earlier attempts' reasons."""
    from servebench.jobs.scenario import run_scenario
    from servebench.matrix import RunSpec

    profile = external_profile(two_servers, tmp_path / "results")
    profile["measurement"]["max_attempts"] = 2
    profile["loadgen"] = {"validity": {"send_lag_p99_max_ms": send_lag_p99_max_ms}}
    config = _config(profile, tmp_path)
    payloads = tmp_path / "payloads.csv"
    payloads.write_text("text\nhello\nworld\n")
    capacity = tmp_path / "capacity.json"
    capacity.write_text(json.dumps({"saturation_rps": 40.0}))
    out = tmp_path / "run"
    summary = run_scenario(
        config, RunSpec("external", "fast", "steady", 0), None, payloads, out, capacity
    )
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["invalid_attempts"]) == attempts - 1
    if attempts == 1:
        assert summary.valid, summary.invalid_reasons
    else:
        assert not summary.valid and not meta["valid"]
        assert all("send-lag" in " ".join(reasons) for reasons in meta["invalid_attempts"])
        assert any("send-lag" in reason for reason in meta["invalid_reasons"])
    assert summary.counts["ok"] >= 50  # the kept attempt's requests, in the run's folder
