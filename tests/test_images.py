"""Container images (servebench.deploy.images): the requirement sets of the wheelhouse, the run
flags derived from the K3s pod spec (servebench.deploy.docker), and, where Docker runs, the tiny
optimized image started with the pod's security settings (probes, the service's fuzz cases,
nothing written outside the emptyDirs).

The Docker test starts the optimized image that the session's tiny docker study built (tests/
docker_testbed.py: the base image by debootstrap, which needs root and apt's Debian mirror, the
wheelhouse and both variants' images; several minutes). It starts a container: run it under
the heavy-command lock, e.g.
`flock /tmp/servebench-heavy.lock .venv/bin/python -m pytest tests/test_images.py`.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bento_testbed import post_json

from servebench.config import load_config
from servebench.deploy import docker, images, podspec

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0

# ------------------------------------------------------------------------ without Docker


def test_image_ref_is_the_tag_the_k3s_overlays_use():
    import yaml

    # The committed overlays name each variant's image [<registry>/]<repository>/<Bento name>.
    for variant in ("baseline", "optimized"):
        overlay = REPO_ROOT / "k3s" / "overlays" / variant / "kustomization.yaml"
        image = yaml.safe_load(overlay.read_text(encoding="utf-8"))["images"][0]
        ref = images.image_ref(f"sentiment-{variant}:{image['newTag']}")
        assert ref == f"{image['newName']}:{image['newTag']}"
    assert images.image_ref("sentiment-optimized:abc", "servebench", "registry.example:5000/") == (
        "registry.example:5000/servebench/sentiment-optimized:abc"
    )
    with pytest.raises(images.ImageBuildError, match="no version"):
        images.image_ref("sentiment-optimized")


def test_runtime_requirements_come_from_the_bento_files_and_the_lock():
    lock_text = images.LOCK_FILE.read_text(encoding="utf-8")
    bentoml_pin = next(line for line in lock_text.splitlines() if line.startswith("bentoml=="))
    torch_runtime = images.runtime_requirements("pytorch")
    onnx_runtime = images.runtime_requirements("onnx-int8")
    assert torch_runtime[0] == onnx_runtime[0] == bentoml_pin
    # pip options (the PyTorch index URL) never reach the wheelhouse's request.
    assert not any(line.startswith("-") for line in torch_runtime + onnx_runtime)
    assert any(line.startswith("torch==2.13.0") for line in torch_runtime)
    # The optimized variant's image carries ONNX Runtime and neither torch nor transformers.
    assert any(line.startswith("onnxruntime==") for line in onnx_runtime)
    assert not any(line.startswith(("torch", "transformers")) for line in onnx_runtime)


def test_wheel_pin_reads_wheel_file_names():
    assert images.wheel_pin("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl") == (
        "torch==2.13.0+cpu"
    )
    assert images.wheel_pin("typing_extensions-4.15.0-py3-none-any.whl") == (
        "typing-extensions==4.15.0"
    )
    with pytest.raises(images.ImageBuildError, match="not a wheel"):
        images.wheel_pin("numpy-2.4.6.tar.gz")


def test_quantities():
    assert podspec.memory_bytes("1536Mi") == 1536 * 2**20
    assert podspec.memory_bytes("3Gi") == 3 * 2**30
    assert podspec.memory_bytes("512M") == 512 * 10**6
    assert podspec.memory_bytes(1000) == 1000
    assert podspec.cpu_cores("500m") == 0.5
    assert podspec.cpu_cores("2") == 2.0
    with pytest.raises(podspec.PodSpecError, match="memory quantity"):
        podspec.memory_bytes("lots")
    with pytest.raises(podspec.PodSpecError, match="CPU quantity"):
        podspec.cpu_cores("fast")


def test_container_settings_are_the_pod_specs(monkeypatch):
    monkeypatch.setattr(docker, "docker_exe", lambda: "docker")
    deployment = podspec.load_deployment()
    settings = podspec.container_settings(deployment)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert settings["user"] == (
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    )
    # The image is built for that user (BentoML's uid/gid, which the pod spec names).
    assert settings["user"] == f"{images.BENTO_UID}:{images.BENTO_UID}"
    assert settings["writable_paths"] == sorted(m["mountPath"] for m in container["volumeMounts"])
    assert all(
        path == "/tmp" or path.startswith(images.BENTO_HOME + "/")
        for path in settings["writable_paths"]
    )
    assert settings["port"] == images.CONTAINER_PORT
    assert settings["probes"]["readiness"]["path"] == "/readyz"
    assert settings["probes"]["liveness"]["path"] == "/livez"
    assert settings["probes"]["startup"]["port"] == images.CONTAINER_PORT
    args = docker.docker_run_args(settings, "img:1", host_port=4321, cpuset=[0], name="x")
    joined = " ".join(args)
    for flag in (
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--user 1034:1034",
        "--cpuset-cpus 0",
        "--cpus 1",
        f"--memory {3 * 2**30}",
        "--publish 127.0.0.1:4321:3000",
        "--tmpfs /tmp:",
        "--tmpfs /home/bentoml/.cache:",
        "--restart no",
    ):
        assert flag in joined, flag
    assert args[-1] == "img:1"


def test_changing_the_pod_spec_changes_the_container_flags(monkeypatch):
    monkeypatch.setattr(docker, "docker_exe", lambda: "docker")
    deployment = copy.deepcopy(podspec.load_deployment())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod["securityContext"]["runAsUser"] = 2000
    pod["securityContext"]["runAsGroup"] = 3000
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    container["resources"]["limits"] = {"cpu": "1500m", "memory": "1Gi"}
    container["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})
    pod["volumes"].append({"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}})
    settings = podspec.container_settings(deployment)
    args = docker.docker_run_args(settings, "img:1", host_port=4321)
    joined = " ".join(args)
    assert "--read-only" not in args and "no-new-privileges" not in joined
    assert "--user 2000:3000" in joined and "--cap-drop NET_RAW" in joined
    assert "--cpus 1.5" in joined and f"--memory {2**30}" in joined
    assert f"/scratch:{docker.TMPFS_OPTIONS},size={64 * 2**20}" in args  # the emptyDir's limit
    pod["volumes"].append({"name": "config", "configMap": {"name": "c"}})
    with pytest.raises(podspec.PodSpecError, match="other than emptyDir"):
        podspec.container_settings(deployment)


def test_dockerfile_installs_from_the_wheelhouse_only():
    text = images.render_dockerfile("servebench-base:abc", "onnx-int8", ["/entry.sh"])
    assert "{{" not in text
    assert text.count("FROM servebench-base:abc") == 2
    assert "--no-index" in text and "--find-links /wheels" in text
    assert f"USER {images.BENTO_UID}:{images.BENTO_UID}" in text
    assert f"EXPOSE {images.CONTAINER_PORT}" in text
    assert 'ENTRYPOINT ["/entry.sh"]' in text
    # The pod's emptyDir paths exist, world-writable: a tmpfs mounted over a folder takes its
    # mode, also when Docker starts the container again (docker restart, a restart policy).
    paths = podspec.container_settings(podspec.load_deployment())["writable_paths"]
    assert f"chmod 1777 {' '.join(paths)}" in text
    # The final stage copies the venv, not the wheels.
    final = text.split("FROM servebench-base:abc", 2)[2]
    assert "/wheels" not in final


# --------------------------------------------------------------------------- with Docker


def _docker(*args: str, check: bool = True, timeout_s: float = 60) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()[-500:]}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_ready(url: str, container: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        state = json.loads(_docker("inspect", "--format", "{{json .State}}", container))
        if not state["Running"]:
            logs = subprocess.run(
                ["docker", "logs", "--tail", "30", container], capture_output=True, text=True
            )
            pytest.fail(f"the container exited ({state['ExitCode']}):\n{logs.stderr[-3000:]}")
        try:
            if _get(url + "/readyz") == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/readyz did not answer 200 within {READY_TIMEOUT_S:.0f} s")


def _proc_status(container: str) -> dict[str, str]:
    text = _docker("exec", container, "cat", "/proc/1/status")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


@pytest.mark.e2e
def test_optimized_image_serves_with_the_pods_security_settings(docker_study):
    from test_service import _bad_requests

    config = load_config(REPO_ROOT / ".test" / "config.yaml")
    settings = podspec.container_settings(podspec.load_deployment())
    port = free_port()
    args = docker.docker_run_args(
        settings,
        docker_study.image("optimized")["image"],
        host_port=port,
        cpuset=config["cpus"]["server"],
        name=f"servebench-test-images-{os.getpid()}",
    )
    container = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert container.returncode == 0, container.stderr
    container_id = container.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, container_id)
        assert _get(url + "/livez") == 200
        status, answer = post_json(url + "/classify", {"text": "a wonderful friendly service"})
        assert status == 200 and answer["label"] in answer["scores"], answer

        limits = json.loads(
            _docker("exec", container_id, "cat", f"{images.BENTO_PATH}/src/variant.json")
        )["limits"]
        # The service tests' fuzz cases (their messages are checked there, on the same code).
        for path, body, _hint in _bad_requests(limits):
            status, answer = post_json(url + path, body)
            assert 400 <= status < 500, (path, body[:60], status, answer)
            assert isinstance(answer, dict) and answer.get("error"), (path, body[:60], answer)
        status, answer = post_json(url + "/classify_batch", {"texts": ["fine", "awful"]})
        assert status == 200 and len(answer) == 2

        # What the kernel says about the server's process: the pod's user, no capabilities,
        # no privilege escalation.
        proc = _proc_status(container_id)
        uid, gid = settings["user"].split(":")
        assert proc["Uid"].split()[0] == uid and proc["Gid"].split()[0] == gid
        assert int(proc["CapEff"], 16) == 0 and int(proc["CapBnd"], 16) == 0
        assert proc["NoNewPrivs"] == "1"
        host = json.loads(_docker("inspect", "--format", "{{json .HostConfig}}", container_id))
        assert host["ReadonlyRootfs"] is True and host["CpusetCpus"] == ",".join(
            map(str, config["cpus"]["server"])
        )
        bindings = host["PortBindings"][f"{settings['port']}/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        # The root filesystem refuses writes; the emptyDir paths take them.
        refused = subprocess.run(
            ["docker", "exec", container_id, "touch", f"{images.BENTO_PATH}/x"],
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0 and "read-only" in refused.stderr.lower()
        for path in settings["writable_paths"]:
            _docker("exec", container_id, "touch", f"{path}/written-by-test")
        # Nothing changed outside the writable mounts (docker diff lists the image's changes;
        # tmpfs mounts are not part of it).
        changes = [line.split(" ", 1) for line in _docker("diff", container_id).splitlines()]
        outside = [
            path
            for _, path in changes
            if not any(
                path == mount or path.startswith(mount + "/") or mount.startswith(path + "/")
                for mount in settings["writable_paths"]
            )
        ]
        assert outside == [], changes
    finally:
        _docker("rm", "--force", container_id, check=False)
    assert container_id not in _docker("ps", "--all", "--quiet", "--no-trunc")
