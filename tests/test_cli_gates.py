"""`servebench loadtest` end to end: SLO gates and their exit statuses, goodput, request headers
(-H) reaching a server that refuses requests without them, for Locust and for the probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from loadgen_tolerance import SEND_LAG_P99_MAX_MS

from servebench.cli import main
from servebench.loadgen.probe import sequential_latencies_ms
from servebench.net import free_port, http_get
from servebench.records import RunSummary

pytestmark = pytest.mark.e2e

SECRET = "s3cret-value"
HEADER = f"X-Api-Key: {SECRET}"
_USABLE = os.sched_getaffinity(0)
SERVER_CPUS, LOADGEN_CPUS = (["--cpus", "0"], ["--cpus", "1"]) if {0, 1} <= _USABLE else ([], [])


@pytest.fixture(scope="module")
def protected():
    """The test server, answering 401 to a request without the header."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "servebench.loadgen.testserver", "--port", str(port)]
        + ["--require-header", HEADER]
        + SERVER_CPUS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while http_get(url + "/ok", timeout_s=1.0)[0] != 401:
        assert time.monotonic() < deadline and process.poll() is None, "no test server"
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    """Every other text makes /by-text answer after 80 ms; the others at once."""
    path = tmp_path_factory.mktemp("payloads") / "texts.csv"
    path.write_text("text\nsleep:80\nhello\n")
    return path


def loadtest(url, out, *options):
    command = [
        sys.executable, "-m", "servebench.cli", "loadtest", "--host", url, "--rate", "20",
        "--duration", "3", "--warmup", "0.5", "--no-progress", "--out", str(out), *LOADGEN_CPUS,
        "--max-send-lag-ms", str(SEND_LAG_P99_MAX_MS), *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    return result, (out / "summary.json")


def test_without_the_header_every_request_fails_and_the_gate_says_so(protected, tmp_path):
    result, path = loadtest(
        protected, tmp_path, "--endpoint", "/ok", "--method", "GET", "--slo", "error_rate<=0.01"
    )
    assert result.returncode == 3, result.stdout + result.stderr
    summary = RunSummary.read(path)
    assert summary.valid and summary.counts["ok"] == 0 and summary.counts["failed"] > 0
    assert "FAIL  error_rate<=0.01  (measured 1)" in result.stdout


def test_headers_reach_the_server_and_goodput_counts_fast_answers(protected, payloads, tmp_path):
    # Two gates: the latency gate fails (every other request takes 80 ms), the error gate holds.
    result, path = loadtest(
        protected,
        tmp_path / "strict",
        "--endpoint", "/by-text", "--payloads", str(payloads), "-H", HEADER,
        "--header", "X-Other:  spaced value ", "--slo", "p99_ms<=50", "--slo", "error_rate<=0",
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    summary = RunSummary.read(path)
    assert summary.valid, summary.invalid_reasons
    assert summary.counts["ok"] == summary.n_measured > 0  # the header got every request in
    assert [(v["gate"], v["passed"]) for v in summary.slo_gates] == [
        ("p99_ms<=50", False),
        ("error_rate<=0", True),
    ]
    assert summary.goodput_latency_ms == 50
    assert 0.3 * summary.throughput_rps < summary.goodput_rps < 0.7 * summary.throughput_rps
    assert "FAIL  p99_ms<=50" in result.stdout and "PASS  error_rate<=0" in result.stdout
    # Recorded by name only: the value may be a secret.
    assert summary.settings["header_names"] == ["X-Api-Key", "X-Other"]
    assert SECRET not in path.read_text()
    plan = json.loads((path.parent / "plan.json").read_text())
    assert plan["headers"]["X-Other"] == "spaced value"

    # Gates that hold: exit 0.
    result, path = loadtest(
        protected,
        tmp_path / "loose",
        "--endpoint", "/by-text", "--payloads", str(payloads), "-H", HEADER,
        "--slo", "p99_ms<=5000", "--slo", "throughput_rps>=5",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    loose = RunSummary.read(path)
    assert loose.goodput_rps == pytest.approx(loose.throughput_rps)


def test_an_invalid_run_exits_1_whatever_its_gates(protected, tmp_path):
    result, path = loadtest(
        protected,
        tmp_path,
        "--endpoint", "/ok", "--method", "GET", "-H", HEADER, "--slo", "error_rate<=0.01",
        "--max-cpu-percent", "0.0001",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    summary = RunSummary.read(path)
    assert not summary.valid and all(v["passed"] for v in summary.slo_gates)


@pytest.mark.parametrize("header", ["no colon", ": empty name", "bad name: x"])
def test_a_malformed_header_is_bad_input(tmp_path, capsys, header):
    command = ["loadtest", "--host", "http://127.0.0.1:9", "--rate", "5", "--duration", "1"]
    assert main([*command, "--out", str(tmp_path), "-H", header]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 'Name: value'" in err[0], err


def test_the_probe_sends_the_headers(protected):
    url = protected + "/ok"
    assert sequential_latencies_ms(url, ["{}"], 2) == [None, None]
    answered = sequential_latencies_ms(url, ["{}"], 2, headers={"X-Api-Key": SECRET})
    assert all(latency is not None for latency in answered)
