"""The docker target (servebench.deploy.docker, servebench.faults.docker): its settings come from
the same rendered K3s manifest as a pod's; and, where Docker runs, the tiny study on the docker
target (tests/docker_testbed.py: both images built, every run valid), its scenario run and each
docker fault, the container's CPU time counted as the job's own, Docker's restart policy, and
teardown on SIGTERM.

The Docker tests start containers: run them under the heavy-command lock, e.g.
`flock /tmp/servebench-heavy.lock .venv/bin/python -m pytest tests/test_docker_target.py`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from study_testbed import job_counts

from servebench.config import config_errors, deep_merge, load_config
from servebench.cpus import ForeignCpu, adopt_cpu
from servebench.deploy import docker
from servebench.errors import UserError
from servebench.fault_kinds import faults_for_target, faults_of
from servebench.faults import FaultError, injector
from servebench.matrix import resilience_matrix
from servebench.settings import DockerTarget, deploy_target

DOCKER_FAULTS = ["kill-pid1", "docker-kill", "docker-restart", "docker-pause"]


def docker_config(**deploy_k3s) -> dict:
    return deep_merge(load_config(), {"deploy": {"target": "docker", "k3s": deploy_k3s}})


# ------------------------------------------------------------------------ without Docker


def test_the_docker_target_takes_the_server_cores_and_the_variants_pod_settings():
    config = docker_config(resources={"limits": {"memory": "2Gi"}})
    config["variants"]["optimized"]["k3s"] = {"replicas": 1, "pdb_min_available": 1}
    target = deploy_target(config, "optimized")
    assert isinstance(target, DockerTarget)
    assert target.cpus == tuple(config["cpus"]["server"]) and target.restart == "none"
    assert target.pod.resources["limits"]["memory"] == "2Gi"
    assert target.with_restart("supervisor").restart == "supervisor"
    assert config_errors(config) == []


def _plan(config: dict, tmp_path: Path, monkeypatch) -> tuple[dict, list[str], dict]:
    """What docker_deployment derives for the optimized variant: the rendered pod's manifest
    (as written into the run folder), the container settings and the `docker run` flags."""
    monkeypatch.setattr(docker, "docker_exe", lambda: "docker")
    target = deploy_target(config, "optimized")
    out = tmp_path / "run"
    settings, args = docker.plan_container(
        target, "optimized", ("servebench/sentiment-optimized", "v1"), out, host_port=4321
    )
    rendered = yaml.safe_load_all((out / "k3s" / "manifests.yaml").read_text(encoding="utf-8"))
    deployment = next(doc for doc in rendered if doc and doc["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0], args, settings


def test_one_setting_changes_the_pod_manifest_and_the_container_flags_alike(tmp_path, monkeypatch):
    container, args, settings = _plan(docker_config(), tmp_path / "default", monkeypatch)
    joined = " ".join(args)
    assert container["resources"]["limits"]["memory"] == "3Gi"
    assert f"--memory {3 * 2**30}" in joined
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--read-only" in args and "--cpus 1" in joined
    assert f"--cpuset-cpus {','.join(map(str, docker_config()['cpus']['server']))}" in joined
    assert "--publish 127.0.0.1:4321:3000" in joined and "--restart no" in joined
    assert args[-1] == "servebench/sentiment-optimized:v1"
    # deploy.k3s.resources.limits.memory: both the manifest and the flags follow.
    changed = docker_config(resources={"limits": {"memory": "1536Mi", "cpu": "500m"}})
    container, args, _ = _plan(changed, tmp_path / "memory", monkeypatch)
    joined = " ".join(args)
    assert container["resources"]["limits"] == {"memory": "1536Mi", "cpu": "500m"}
    assert f"--memory {1536 * 2**20}" in joined and "--cpus 0.5" in joined
    # deploy.k3s.read_only_root_filesystem: both follow.
    writable = docker_config(read_only_root_filesystem=False)
    container, args, _ = _plan(writable, tmp_path / "writable", monkeypatch)
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert "--read-only" not in args
    # A resilience variant's restart: supervisor is Docker's on-failure policy.
    target = deploy_target(docker_config(), "optimized").with_restart("supervisor")
    _, args = docker.plan_container(target, "optimized", ("i", "1"), tmp_path / "r", host_port=1)
    assert "--restart on-failure" in " ".join(args)


def test_docker_runs_rerun_when_a_pod_setting_changes():
    before = DockerTarget.of(docker_config(), "optimized").as_dict()
    after = DockerTarget.of(docker_config(read_only_root_filesystem=False), "optimized").as_dict()
    assert before != after and before["pod"]["read_only_root_filesystem"] is True
    # Settings of the cluster only (how kubectl is called) do not touch a container.
    other = DockerTarget.of(docker_config(kubectl="k3s kubectl"), "optimized").as_dict()
    assert other == before


def test_more_than_one_replica_is_refused_on_the_docker_target(tmp_path):
    config = docker_config(replicas=2, pdb_min_available=1)
    with pytest.raises(UserError, match="one container.*2 replicas"):
        with docker.docker_deployment(deploy_target(config, "optimized"), {"tag": "a:b"}, tmp_path):
            pass


def test_the_docker_faults_belong_to_the_docker_target():
    assert faults_of("docker") == DOCKER_FAULTS
    config = docker_config()
    # config.yaml's (schema default) faults of the other targets are skipped, not errors.
    assert faults_for_target(config) == DOCKER_FAULTS
    assert {spec.fault for spec in resilience_matrix(config)} == set(DOCKER_FAULTS)
    assert not set(DOCKER_FAULTS) & set(faults_for_target(load_config()))
    for kind in DOCKER_FAULTS:
        assert callable(injector(kind, "docker"))
        with pytest.raises(FaultError, match="docker target only"):
            injector(kind, "local")
    with pytest.raises(FaultError, match="local target only"):
        injector("kill-worker", "docker")


def test_the_overhead_table_compares_the_two_calibrations_of_a_variant():
    from servebench.bench.container_overhead import FIELDS, comparison_row

    local = {"saturation_rps": 100.0, "capacity_rps": 80.0, "unloaded_p50_ms": 5.0}
    docker_answers = {"saturation_rps": 90.0, "capacity_rps": None, "steps_run": 7}
    docker_answers["capacity_unattainable"] = "unattainable: no rate met p99 <= 200 ms twice"
    row = comparison_row("optimized", {"local": local, "docker": docker_answers})
    assert row["local_saturation_rps"] == 100.0 and row["docker_saturation_rps"] == 90.0
    assert row["saturation_docker_over_local"] == 0.9
    assert row["capacity_docker_over_local"] is None  # no capacity on one side: no ratio
    assert row["docker_capacity_unattainable"].startswith("unattainable")
    assert row["docker_steps"] == 7 and set(row) <= set(FIELDS)


BUSY = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_adopted_cpu_time_is_the_jobs_own(tmp_path):
    """A process that is not our descendant (like a container's, a child of Docker's daemon) is
    foreign to the check, unless a deployment adopts its CPU time (servebench.cpus.adopt_cpu)."""
    core = sorted(os.sched_getaffinity(0))[-1]

    def orphan_busy(seconds: float) -> psutil.Process:
        # sh starts python in the background and exits: python is reparented, not our child.
        pid_file = tmp_path / f"orphan{seconds}.pid"
        subprocess.run(
            ["sh", "-c", f'taskset -c {core} "$0" -c "$1" & echo $! > "$2"']
            + [sys.executable, BUSY.format(s=seconds), str(pid_file)],
            check=True,
        )
        process = psutil.Process(int(pid_file.read_text()))
        assert process.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
        return process

    def window(adopt: bool) -> float:
        process = orphan_busy(1.0)
        used = {"s": 0.0}

        def cpu_s() -> float:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used["s"] = max(used["s"], times.user + times.system)
            return used["s"]

        with ForeignCpu([core], interval_s=0.1) as foreign:
            with adopt_cpu(cpu_s) if adopt else contextlib.nullcontext():
                psutil.wait_procs([process], timeout=30)
        return foreign.foreign_cpu_s

    assert window(adopt=False) >= 0.6
    assert window(adopt=True) <= 0.3


# --------------------------------------------------------------------------- with Docker


def tiny_docker_config(testbed) -> dict:
    config = copy.deepcopy(testbed.config)
    config["deploy"]["target"] = "docker"
    return config


def containers_of(out: Path) -> list[str]:
    result = docker.docker(
        "ps", "--all", "--quiet", "--filter", f"label={docker.RUN_LABEL}={out.resolve()}"
    )
    return result.stdout.split()


# What the tiny docker study (.test/docker.yaml) runs besides the analysis: the images and the
# measurements in containers; the model, the Bentos and the tuning are the local study's.
DOCKER_STUDY_JOBS = {"image": 2, "calibrate": 2, "loadtest": 2, "resilience_run": 4}


@pytest.mark.e2e
def test_the_tiny_study_on_the_docker_target_is_valid(docker_study):
    status = json.loads(docker_study.layout.status_json.read_text())
    assert status["ok"], status["problems"]
    assert status["valid_runs"] == status["runs"] == 2, status
    assert status["valid_resilience_runs"] == status["resilience_runs"] == 4, status
    jobs = job_counts(docker_study.output)
    assert {rule: jobs.get(rule) for rule in DOCKER_STUDY_JOBS} == DOCKER_STUDY_JOBS, jobs
    assert not {"model_pytorch", "model_runtime", "bento", "tune"} & set(jobs), jobs
    # Each variant's image is tagged with its Bento's version, as the K3s overlays expect.
    for variant in ("baseline", "optimized"):
        image = docker_study.image(variant)
        assert image["image"].endswith(
            ":" + docker_study.bento_record(variant)["tag"].split(":")[1]
        )
        capacity = json.loads(
            (
                docker_study.results_dir / "calibration" / "docker" / variant / "capacity.json"
            ).read_text()
        )
        assert capacity["target"] == "docker" and capacity["saturation_rps"] > 0, capacity


@pytest.mark.e2e
def test_a_scenario_run_of_the_docker_study(docker_study):
    config = docker_study.config
    out = docker_study.results_dir / "runs" / "docker" / "optimized" / "steady" / "rep0"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"], summary["invalid_reasons"]
    facts = json.loads((out / "docker.json").read_text())
    assert facts["image"] == docker_study.image("optimized")["image"] and facts["removed"]
    assert facts["restart"] == "none" and "--read-only" in facts["run_args"]
    assert facts["state"]["Status"] == "running" and facts["restart_count"] == 0
    assert containers_of(out) == []
    # Docker's helpers of the container (its shim; the proxy of its port, unless the daemon
    # runs without one) ran on the server's cores: on the generator's they delay its sends.
    pinning = facts["helper_pinning"]
    assert "containerd-shim" in {helper["name"] for helper in pinning}, pinning
    assert all(helper.get("cpus") == config["cpus"]["server"] for helper in pinning), pinning
    # The container's CPU time during the load (its processes, sampled once a second) was the
    # job's own: the foreign-CPU check did not count it (it would, were it not adopted).
    resources = pd.read_csv(out / "resources.csv")
    container_cpu_s = resources["cpu_percent"].sum() / 100
    assert container_cpu_s > 0.5 and facts["container_cpu_s"] > container_cpu_s / 2
    window_s = summary["horizon_s"]
    cores = len(config["cpus"]["server"]) + len(config["cpus"]["loadgen"])
    foreign_cpu_s = summary["foreign_cpu_percent"] / 100 * window_s * cores
    assert foreign_cpu_s < 0.5 * container_cpu_s, (foreign_cpu_s, container_cpu_s)
    assert len((out / "server.log").read_text().splitlines()) > 1  # the container's own lines
    assert (resources["n_processes"] >= 1).all() and resources["cpu_percent"].max() > 0
    assert resources["rss_bytes"].max() > 50 * 2**20
    metrics = pd.read_csv(out / "server_metrics.csv")
    assert metrics["metric"].str.startswith("bentoml_").any()
    rendered = (out / "k3s" / "manifests.yaml").read_text()
    assert docker_study.image("optimized")["image"].split(":")[1] in rendered


def check_fault_run(out: Path, at_s: float) -> tuple[dict, dict, pd.DataFrame]:
    """What every docker fault run must show: the fault injected on time, every scheduled
    request accounted for, none failing before the fault, the container removed."""
    entry = json.loads((out / "faults.json").read_text())["faults"][0]
    assert entry["injected"] and entry["error"] is None, entry
    assert entry["start_s"] == pytest.approx(at_s, abs=0.3)
    assert entry["requests_lost"] == 0
    requests = pd.read_parquet(out / "requests.parquet")
    assert (requests[requests["scheduled_s"] < at_s - 0.5]["outcome"] == "ok").all()
    facts = json.loads((out / "docker.json").read_text())
    assert facts["removed"] and containers_of(out) == []
    return entry, facts, requests


def assert_stays_down(entry: dict, facts: dict, requests: pd.DataFrame, at_s: float) -> None:
    """A killed container that no restart policy brings back: SIGKILLed, every later request
    fails, no recovery."""
    assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
    assert facts["restart_count"] == 0 and facts["state"]["Status"] == "exited"
    assert facts["state"]["ExitCode"] == 137
    after = requests[requests["scheduled_s"] > at_s + 0.5]
    assert len(after) and (after["outcome"] != "ok").all()
    assert not entry["recovered"] and entry["time_to_first_ok_s"] is None


@pytest.mark.e2e
@pytest.mark.parametrize("fault", DOCKER_FAULTS)
def test_each_docker_fault_of_the_docker_study(docker_study, fault):
    """The study's resilience runs (the optimized variant, restart policy `no`, the faults of
    .test/docker.yaml): each fault tells its story."""
    spec = docker_study.config["resilience"]["faults"][fault]
    at_s = spec["at_s"]
    out = docker_study.results_dir / "resilience" / "docker" / "optimized" / fault / "rep0"
    entry, facts, requests = check_fault_run(out, at_s)
    if fault in ("kill-pid1", "docker-kill"):
        assert_stays_down(entry, facts, requests, at_s)
    elif fault == "docker-restart":
        # The same container again, on the same port: a new main process.
        assert entry["restarted_pid"] and entry["restarted_pid"] != entry["pid"]
        assert entry["end_s"] > entry["start_s"]
        assert entry["requests_not_ok"] > 0 and entry["recovered"], entry
        assert facts["state"]["Status"] == "running"
    else:
        assert entry["end_s"] - entry["start_s"] == pytest.approx(spec["duration_s"], abs=0.5)
        # requests sent into the pause wait for it: corrected latency of about the pause
        assert entry["peak_latency_ms"] > 0.75 * spec["duration_s"] * 1000
        assert entry["recovered"], entry


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["kill-pid1", "docker-kill"])
def test_dockers_restart_policy_undoes_a_killed_main_process_not_docker_kill(
    docker_study, testbed, testbed_payloads, tmp_path, kind
):
    """Restart `supervisor` (Docker's on-failure policy), which the study's runs do not use."""
    from servebench.jobs.resilience import run_fault
    from servebench.matrix import FaultRunSpec

    at_s = 4.0
    config = tiny_docker_config(testbed)
    config["resilience"].update(
        rate_rps=10.0,
        duration_s=14.0,
        warmup_s=1.0,
        variants={"v": {"variant": "optimized", "restart": "supervisor"}},
        faults={"f": {"kind": kind, "at_s": at_s}},
        recovery={"window_s": 2.0, "quiet_s": 3.0, "band_tolerance": 2.0},
    )
    assert config_errors(config) == []
    out = tmp_path / "resilience"
    spec = FaultRunSpec("docker", "v", "f", 0)
    record = docker_study.bento_record_path("optimized")
    run_fault(config, spec, record, testbed_payloads, out)
    entry, facts, requests = check_fault_run(out, at_s)
    if kind == "kill-pid1":
        # Docker's on-failure policy starts the container again on the same port.
        assert entry["requests_not_ok"] > 0 and entry["time_to_first_error_s"] >= 0
        assert facts["restart_count"] >= 1 and facts["state"]["Status"] == "running"
        assert entry["time_to_first_ok_s"] > 0 and entry["recovered"], entry
    else:
        # `docker kill` is a stop by hand, which no policy undoes.
        assert_stays_down(entry, facts, requests, at_s)


# A job that deploys the optimized variant on the docker target and waits (as Snakemake's
# job would while it measures); argv: config.json, the Bento record, the run folder.
SIGTERM_CHILD = r"""
import json, sys, time
from pathlib import Path
from servebench.deploy import deployed
from servebench.settings import deploy_target
config = json.loads(Path(sys.argv[1]).read_text())
record = json.loads(Path(sys.argv[2]).read_text())
with deployed(deploy_target(config, "optimized"), record, Path(sys.argv[3])) as deployment:
    print(deployment.url, flush=True)
    time.sleep(120)
"""


@pytest.mark.e2e
def test_sigterm_removes_the_container(docker_study, testbed, tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(tiny_docker_config(testbed)))
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_CHILD, config_path]
        + [docker_study.bento_record_path("optimized"), out],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = child.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        assert len(containers_of(out)) == 1
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) != 0
    finally:
        if child.poll() is None:
            child.kill()
    assert containers_of(out) == []
    assert json.loads((out / "docker.json").read_text())["removed"]
    assert (out / "server.log").stat().st_size > 0


@pytest.mark.e2e
def test_a_missing_image_names_the_command_that_builds_it(docker_study, testbed):
    target = deploy_target(tiny_docker_config(testbed), "optimized")
    record = {"variant": "optimized", "tag": "sentiment-optimized:0000000000000000"}
    with pytest.raises(UserError, match="servebench image build --variant optimized"):
        docker.bento_image(target, record)
    name, tag, inspected = docker.bento_image(target, docker_study.bento_record("optimized"))
    assert f"{name}:{tag}" == docker_study.image("optimized")["image"] and inspected["Id"]
