"""The local deployment driver: readiness, monitoring, and no orphan processes, ever."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bento_testbed import post_json, wait_gone

from servebench import cpus
from servebench.deploy import local, monitor
from servebench.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize(
    "text, cores",
    [("0", [0]), ("0,2", [0, 2]), ("0-3", [0, 1, 2, 3]), ("3,0-1", [0, 1, 3]), (" 1 ", [1])],
)
def test_parse_cpus(text, cores):
    assert cpus.parse_cpus(text) == cores


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "-1", "0,,x"])
def test_parse_cpus_rejects_bad_lists(text):
    with pytest.raises(ValueError, match="bad CPU list"):
        cpus.parse_cpus(text)


def test_check_cpus_names_missing_cores():
    available = sorted(os.sched_getaffinity(0))
    assert cpus.check_cpus(available[:1]) == available[:1]
    with pytest.raises(ValueError, match="not available"):
        cpus.check_cpus([max(available) + 64])


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_parse_metrics_keeps_bentoml_samples_with_labels():
    text = (
        "# HELP bentoml_service_request_total Total\n"
        "# TYPE bentoml_service_request_total counter\n"
        'bentoml_service_request_total{endpoint="/classify",http_response_code="200"} 3.0\n'
        "# HELP python_gc_objects_collected_total x\n"
        "# TYPE python_gc_objects_collected_total counter\n"
        'python_gc_objects_collected_total{generation="0"} 10.0\n'
    )
    assert monitor.parse_metrics(text) == [
        ("bentoml_service_request_total", "endpoint=/classify;http_response_code=200", 3.0)
    ]


def test_log_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert local.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no server log" in local.log_tail(tmp_path / "missing.log")


def test_a_port_taken_before_the_start_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(local.ServerStartError) as error:
            local.start_server(
                "sentiment-x:1", bentoml_home=tmp_path, log_path=tmp_path / "s.log", port=port
            )
    message = str(error.value)
    assert f"port {port} on 127.0.0.1 is already in use, by pid {os.getpid()}" in message
    assert not (tmp_path / "s.log").exists()  # refused before anything was started


def test_a_port_answered_by_another_server_is_not_ready(tmp_path):
    import http.server
    import threading

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - every path answers 200, /readyz included
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    started = subprocess.Popen(["sleep", "30"])  # "our server": never listens
    try:
        server = local.LocalServer(
            tag="sentiment-x:1",
            host="127.0.0.1",
            port=other.server_address[1],
            cpus=[],
            log_path=tmp_path / "s.log",
            process=started,
        )
        with pytest.raises(local.ServerStartError, match="another server holds the port"):
            local.wait_ready(server, timeout_s=5)
    finally:
        started.kill()
        started.wait()
        other.shutdown()
        other.server_close()


# A stand-in for `bentoml serve TAG --host H --port P`: its first start exits as BentoML does
# when another process took one of its ports; later starts serve /readyz on P.
FAKE_BENTOML = """
import http.server, pathlib, sys
starts = pathlib.Path(sys.argv[0]).with_name("starts")
count = int(starts.read_text()) + 1 if starts.exists() else 1
starts.write_text(str(count))
if count <= int(sys.argv[0].rsplit("-", 1)[1]):
    print("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:1')", flush=True)
    sys.exit(1)
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
port = int(sys.argv[sys.argv.index("--port") + 1])
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""


@pytest.mark.parametrize(
    ("clashes", "ready"), [(1, True), (local.START_ATTEMPTS, False)], ids=["once", "every-time"]
)
def test_a_start_that_lost_a_port_race_is_retried(monkeypatch, tmp_path, clashes, ready):
    fake = tmp_path / f"bentoml-{clashes}"
    fake.write_text(f"#!{sys.executable}\n{FAKE_BENTOML}")
    fake.chmod(0o755)
    monkeypatch.setattr(local, "bentoml_exe", lambda: str(fake))
    log_path = tmp_path / "server.log"
    start = dict(bentoml_home=tmp_path, log_path=log_path, cpus=None, port=None)
    if not ready:  # every attempt clashed: the error
        with pytest.raises(local.ServerStartError, match="Address already in use"):
            local.start_ready_server("sentiment-x:1", ready_timeout_s=30, **start)
    else:
        server = local.start_ready_server("sentiment-x:1", ready_timeout_s=30, **start)
        try:
            assert server.process.poll() is None
            assert local.http_get(server.url + "/readyz", timeout_s=2)[0] == 200
        finally:
            local.stop_server(server)
    # Each clash that was retried left its log; the last attempt's log is server.log.
    retried = min(clashes, local.START_ATTEMPTS - 1)
    kept = sorted(path.name for path in tmp_path.glob("server.clash*.log"))
    assert kept == [f"server.clash{i}.log" for i in range(1, retried + 1)]
    assert (tmp_path / "starts").read_text() == str(min(clashes + 1, local.START_ATTEMPTS))


# ------------------------------------------------------------------------------ end to end


def _server_cpus(testbed):
    return testbed.config["cpus"]["server"]


@pytest.mark.e2e
def test_a_missing_bento_fails_fast_with_the_log_tail(testbed, tmp_path):
    with pytest.raises(local.ServerStartError) as error:
        with local.local_server(
            "sentiment-nope:0000",
            bentoml_home=testbed.bentoml_home,
            log_path=tmp_path / "server.log",
            cpus=_server_cpus(testbed),
            ready_timeout_s=60,
        ):
            pytest.fail("a server without a Bento must not become ready")
    message = str(error.value)
    assert "exited with code" in message and "server.log" in message
    assert "sentiment-nope" in message.split("server.log", 1)[1]  # the tail is shown


@pytest.mark.e2e
def test_a_server_not_ready_in_time_is_stopped_with_a_clear_error(testbed, tmp_path):
    record = testbed.records["optimized"]
    with pytest.raises(local.ServerStartError, match=r"not ready after 0 s") as error:
        with local.local_server(
            record["tag"],
            bentoml_home=record["bentoml_home"],
            log_path=tmp_path / "server.log",
            cpus=_server_cpus(testbed),
            ready_timeout_s=0.01,
        ):
            pytest.fail("must not become ready in 10 ms")
    assert "last lines of" in str(error.value)
    assert not _servers_of(record["tag"]), "a server process survived the failed start"


def _servers_of(tag):
    """Live processes whose command line serves `tag` (ours: the tag is unique per session)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if tag in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found


@pytest.mark.e2e
def test_pinned_server_with_monitoring_writes_both_csvs(testbed, tmp_path):
    record = testbed.records["optimized"]
    cpus = _server_cpus(testbed)
    with local.local_server(
        record["tag"],
        bentoml_home=record["bentoml_home"],
        log_path=tmp_path / "server.log",
        cpus=cpus,
    ) as server:
        processes = server.processes()
        assert len(processes) >= 2  # the arbiter and at least one worker
        for process in processes:
            assert process.cpu_affinity() == cpus
        assert server.host == "127.0.0.1"
        with monitor.monitor(server, tmp_path, interval_s=0.5) as sampler:
            for _ in range(10):
                assert post_json(server.url + "/classify_batch", {"texts": ["nice"]})[0] == 200
            time.sleep(1.2)
        assert sampler.samples >= 3 and sampler.scrape_failures == 0
    with (tmp_path / "resources.csv").open() as handle:
        resources = list(csv.DictReader(handle))
    assert len(resources) >= 3
    assert all(int(row["n_processes"]) >= 2 and int(row["rss_bytes"]) > 0 for row in resources)
    with (tmp_path / "server_metrics.csv").open() as handle:
        metrics = list(csv.DictReader(handle))
    requests = [
        float(row["value"])
        for row in metrics
        if row["metric"] == "bentoml_service_request_total"
        and "endpoint=/classify_batch" in row["labels"]
        and "http_response_code=200" in row["labels"]
    ]
    assert requests and max(requests) >= 10
    assert not _servers_of(record["tag"])


DRIVER = r"""
import json, sys, time
from servebench.deploy.local import local_server
tag, home, log, cpus = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with local_server(tag, bentoml_home=home, log_path=log, cpus=cpus, ready_timeout_s=120) as server:
    print(json.dumps({"pids": [p.pid for p in server.processes()], "url": server.url}), flush=True)
    while True:
        time.sleep(0.2)
"""


@pytest.mark.e2e
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: signal.Signals(s).name
)
def test_killing_the_driver_leaves_no_server_process(testbed, tmp_path, signum):
    record = testbed.records["baseline"]
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER,
            record["tag"],
            record["bentoml_home"],
            str(tmp_path / "server.log"),
            json.dumps(_server_cpus(testbed)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = driver.stdout.readline()
        assert line, f"the driver died before the server was ready (exit {driver.wait()})"
        started = json.loads(line)
        pids = started["pids"]
        assert len(pids) >= 2
        assert post_json(started["url"] + "/classify", {"text": "still here"})[0] == 200
        driver.send_signal(signum)
        driver.wait(timeout=60)
        # SIGKILL leaves no `finally`: the kernel's parent-death signal stops the server.
        survivors = wait_gone(pids, timeout_s=30)
        assert survivors == [], f"server processes survived {signal.Signals(signum).name}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


@pytest.mark.e2e
def test_servebench_serve_command_serves_until_interrupted(testbed, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"results_dir: {tmp_path / 'results'}\n")
    command = [
        str(Path(sys.executable).parent / "servebench"),
        "serve",
        "--variant",
        "optimized",
        "--configfile",
        str(config_file),
        "--bento-json",
        str(testbed.record_paths["optimized"]),
        "--cpus",
        ",".join(map(str, _server_cpus(testbed))),
        "--monitor",
        str(tmp_path / "monitor"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        output = []
        for line in process.stdout:
            output.append(line)
            if " ready at " in line:
                url = line.split(" ready at ", 1)[1].strip()
                break
        assert url, "".join(output)
        status, answer = post_json(url + "/classify", {"text": "a fine day"})
        assert status == 200 and answer["label"]
        tag = testbed.records["optimized"]["tag"]
        pids = _servers_of(tag)
        assert pids
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert wait_gone(pids, timeout_s=30) == []
        assert (tmp_path / "monitor" / "resources.csv").is_file()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_servebench_serve_explains_a_missing_bento(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"results_dir: {tmp_path / 'results'}\n")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "servebench"),
            "serve",
            "--variant",
            "optimized",
            "--configfile",
            str(config_file),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no Bento built for variant 'optimized'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_does_not_inherit_a_jobs_thread_counts(monkeypatch, tmp_path):
    # Snakemake sets OMP_NUM_THREADS & co. to a job's `threads` (all cores for a measurement):
    # inherited, the baseline's PyTorch would run 4 threads on its 1 core (2x slower here).
    for name in local.THREAD_ENV_VARS:
        monkeypatch.setenv(name, "4")
    env = local.server_env(tmp_path, {"SERVEBENCH_VARIANT_SPEC": "spec.json"})
    assert not set(local.THREAD_ENV_VARS) & set(env)
    assert env["SERVEBENCH_VARIANT_SPEC"] == "spec.json"
    assert env["BENTOML_HOME"] == str(tmp_path.resolve())
