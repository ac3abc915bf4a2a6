"""K3s deployment driver: the Bento as an image in the cluster, `kubectl apply -k`, load, teardown.

    with k3s_server(config, bento_record, run_dir) as server:   # deploy + wait for rollout
        with k3s_monitor(server, run_dir):                     # server_metrics.csv, resources.csv
            ...                                                # send load to server.url

The same shape as `deploy.local.local_server`. The steps, each named in errors and in the log:

1. `image-check` / `containerize`: `bentoml containerize <tag> --backend <backend>` builds
   `[<registry>/]<repository>/<Bento name>:<Bento version>` unless the backend has it already;
2. `image-save` + `image-import` (`k3s ctr images import`, single node) or `image-push`
   (a registry, multi-node), skipped when the cluster's containerd has the image already;
3. `render`: the overlay of the variant (k3s/base + the config) into `<run>/k3s/`;
4. `namespace`, `apply` (`kubectl apply -k`), `rollout` (`kubectl rollout status`);
5. `port-forward` to 127.0.0.1 (or the NodePort URL), `readyz` until GET /readyz answers 200;
   a port-forward that exits later (its pod went away) is started again on the same port;
6. in `finally`: `collect` (pods with their restarts -> k3s_pods.csv, events -> k3s_events.json,
   pod logs -> server.log) and `teardown` (`kubectl delete -k`).

Every external command, with its output and exit status, goes to `<run>/deploy.log`; a failed
step raises K3sStepError naming the step and showing the tail of the command's stderr.
The K3s faults of the resilience experiments (delete-pod, rollout-restart, kill-containerd,
restart-k3s) are `inject_fault(server, name)`; servebench.faults registers `fault_injector(name)`
of each and runs them from `run_fault` when deploy.target is k3s.
A variant may set its own replicas, max_replicas and pdb_min_available (`variants.<name>.k3s`):
`k3s_settings(config, variant)` lays them over deploy.k3s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servebench.deploy import kustomize
from servebench.deploy.local import Monitor, free_port, http_get
from servebench.provenance import REPO_ROOT, write_json

log = logging.getLogger(__name__)

K3S_DIR = REPO_ROOT / "k3s"
BASE_DIR = K3S_DIR / "base"
OVERLAYS_DIR = K3S_DIR / "overlays"
APP_NAME = "sentiment"
SELECTOR = f"app.kubernetes.io/name={APP_NAME}"
BASE_IMAGE = "servebench-sentiment"
CONTAINER_PORT = 3000
# A fixed tag in the committed overlays; the driver uses the Bento's version instead.
COMMITTED_IMAGE_TAG = "latest"
STARTUP_PERIOD_S = 5
STDERR_TAIL_LINES = 25
PORT_FORWARD_READY_S = 60.0
TEARDOWN_TIMEOUT_S = 180
K3S_FAULTS = ("delete-pod", "rollout-restart", "kill-containerd", "restart-k3s")
# What a variant may set for itself under `variants.<name>.k3s` (the rest is deploy.k3s).
VARIANT_AXES = ("replicas", "max_replicas", "pdb_min_available")
# Seconds between two starts of a port-forward that exited (its pod went away).
PORT_FORWARD_RETRY_S = 1.0


class K3sStepError(RuntimeError):
    """A step of the K3s deployment failed; `step` names it, the message says why."""

    def __init__(self, step: str, message: str, stderr_tail: str = "") -> None:
        self.step = step
        self.stderr_tail = stderr_tail
        text = f"k3s step '{step}' failed: {message}"
        if stderr_tail:
            text += f"\n{stderr_tail}"
        super().__init__(text)


# ----------------------------------------------------------------------------- settings


def variant_axes(config: dict[str, Any], variant: str | None) -> dict[str, Any]:
    """The deployment axes a variant sets itself (`variants.<name>.k3s`, null keys inherit)."""
    if variant is None:
        return {}
    given = ((config.get("variants") or {}).get(variant) or {}).get("k3s") or {}
    return {key: value for key, value in given.items() if key in VARIANT_AXES and value is not None}


def k3s_settings(config: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    """deploy.k3s of `config` over the defaults of config/config.yaml, with the variant's own
    replicas / max_replicas / pdb_min_available (`variants.<variant>.k3s`) over both."""
    from servebench.config import DEFAULT_CONFIG_PATH, deep_merge, load_yaml

    defaults = load_yaml(DEFAULT_CONFIG_PATH)["deploy"]["k3s"]
    settings = deep_merge(defaults, config.get("deploy", {}).get("k3s") or {})
    return {**settings, **variant_axes(config, variant)}


def image_name(settings: dict[str, Any], bento_tag: str) -> tuple[str, str]:
    """(image name, tag) of a Bento: [<registry>/]<repository>/<Bento name>, <Bento version>."""
    name, _, version = bento_tag.partition(":")
    parts = [settings["image_registry"], settings["image_repository"], name]
    return "/".join(part.strip("/") for part in parts if part), version or COMMITTED_IMAGE_TAG


def check_one_worker(record: dict[str, Any]) -> None:
    """A crashed BentoML worker inside a container is not respawned: one worker per pod."""
    workers = int((record.get("settings") or {}).get("workers", 1))
    if workers != 1:
        raise K3sStepError(
            "render",
            f"variant {record.get('variant')!r} has workers: {workers}; the k3s target runs one "
            "BentoML worker per pod (set workers: 1 and scale with deploy.k3s.replicas)",
        )


# ------------------------------------------------------------------------------ manifests


def _op(op: str, path: str, value: Any = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"op": op, "path": path}
    if op != "remove":
        operation["value"] = value
    return operation


def _patch(kind: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "target": {"kind": kind, "name": APP_NAME},
        "patch": yaml.safe_dump(operations, sort_keys=False),
    }


def overlay_kustomization(
    settings: dict[str, Any],
    variant: str,
    image: tuple[str, str],
    *,
    ready_timeout_s: float,
    base: str = "../../base",
    extra_resources: Sequence[str] = (),
) -> dict[str, Any]:
    """The kustomization of one variant's overlay (JSON 6902 patches over k3s/base)."""
    container = "/spec/template/spec/containers/0"
    resources = settings["resources"]
    startup_failures = max(1, int(-(-float(ready_timeout_s) // STARTUP_PERIOD_S)))
    pull_policy = "Never" if settings["image_transfer"] == "import" else "IfNotPresent"
    deployment_ops = [
        _op("add", "/metadata/labels/servebench.io~1variant", variant),
        _op("add", "/spec/template/metadata/labels/servebench.io~1variant", variant),
        _op("replace", f"{container}/imagePullPolicy", pull_policy),
        _op(
            "replace",
            f"{container}/resources",
            {
                "requests": dict(resources["requests"]),
                "limits": dict(resources["limits"]),
            },
        ),
        _op("replace", f"{container}/startupProbe/failureThreshold", startup_failures),
        _op(
            "replace",
            f"{container}/securityContext/readOnlyRootFilesystem",
            bool(settings["read_only_root_filesystem"]),
        ),
    ]
    replicas = int(settings["replicas"])
    hpa_ops = [
        _op("replace", "/spec/minReplicas", replicas),
        _op("replace", "/spec/maxReplicas", max(replicas, int(settings["max_replicas"]))),
        _op(
            "replace",
            "/spec/metrics/0/resource/target/averageUtilization",
            int(settings["hpa_cpu_utilization_percent"]),
        ),
    ]
    pdb_ops = [_op("replace", "/spec/minAvailable", int(settings["pdb_min_available"]))]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base, *extra_resources],
        "namespace": settings["namespace"],
        "images": [{"name": BASE_IMAGE, "newName": image[0], "newTag": image[1]}],
        "replicas": [{"name": APP_NAME, "count": replicas}],
        "patches": [
            _patch("Deployment", deployment_ops),
            _patch("HorizontalPodAutoscaler", hpa_ops),
            _patch("PodDisruptionBudget", pdb_ops),
        ],
    }


def node_port_service(settings: dict[str, Any]) -> dict[str, Any]:
    """The extra Service of access node-port (the base's ClusterIP one stays)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{APP_NAME}-nodeport",
            "labels": {
                "app.kubernetes.io/name": APP_NAME,
                "app.kubernetes.io/part-of": "servebench",
            },
        },
        "spec": {
            "type": "NodePort",
            "selector": {"app.kubernetes.io/name": APP_NAME},
            "ports": [
                {
                    "name": "http",
                    "port": CONTAINER_PORT,
                    "targetPort": "http",
                    "nodePort": int(settings["node_port"]),
                    "protocol": "TCP",
                }
            ],
        },
    }


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the inline patches) as readable `|` blocks."""


def _literal(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_LiteralDumper.add_representer(str, _literal)


def dump_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False)


OVERLAY_HEADER = (
    "# Generated by servebench.deploy.k3s from the config (deploy.k3s): do not edit by hand.\n"
    "# Regenerate with `servebench k3s-render`; a run writes its own copy, with the Bento's\n"
    "# image tag, into its folder (k3s/overlay/).\n"
)


def write_overlay(
    directory: str | Path,
    settings: dict[str, Any],
    variant: str,
    image: tuple[str, str],
    *,
    ready_timeout_s: float,
    base: str = "../../base",
) -> Path:
    """Write one variant's overlay (kustomization.yaml, + the NodePort Service) into a folder."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    extra = []
    if settings["access"] == "node-port":
        (directory / "service-nodeport.yaml").write_text(
            dump_yaml(node_port_service(settings)), encoding="utf-8"
        )
        extra.append("service-nodeport.yaml")
    kustomization = overlay_kustomization(
        settings,
        variant,
        image,
        ready_timeout_s=ready_timeout_s,
        base=base,
        extra_resources=extra,
    )
    (directory / "kustomization.yaml").write_text(
        OVERLAY_HEADER + dump_yaml(kustomization), encoding="utf-8"
    )
    return directory


def write_committed_overlays(
    config: dict[str, Any], root: str | Path = OVERLAYS_DIR, variants: Sequence[str] | None = None
) -> list[Path]:
    """k3s/overlays/<variant>/ of the experiment's variants, with the fixed image tag (and each
    variant's own replicas and PDB)."""
    from servebench.bento import bento_name

    names = list(variants or config["experiment"]["variants"])
    written = []
    for variant in names:
        settings = k3s_settings(config, variant)
        image = image_name(settings, f"{bento_name(variant)}:{COMMITTED_IMAGE_TAG}")
        directory = Path(root) / variant
        # the overlay refers to k3s/base by a relative path, from wherever it is written
        base = os.path.relpath(BASE_DIR.resolve(), directory.resolve())
        written.append(
            write_overlay(
                directory,
                settings,
                variant,
                image,
                ready_timeout_s=config["deploy"]["ready_timeout_s"],
                base=base,
            )
        )
    return written


def stage_run_manifests(
    out_dir: str | Path,
    settings: dict[str, Any],
    variant: str,
    image: tuple[str, str],
    ready_timeout_s: float,
) -> Path:
    """<out>/k3s/{base,overlay}/ (a copy of k3s/base and the run's overlay) and
    <out>/k3s/manifests.yaml (what the overlay renders to); returns the overlay folder."""
    root = Path(out_dir) / "k3s"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(BASE_DIR, root / "base")
    overlay = write_overlay(
        root / "overlay", settings, variant, image, ready_timeout_s=ready_timeout_s, base="../base"
    )
    (root / "manifests.yaml").write_text(kustomize.render_yaml(overlay), encoding="utf-8")
    return overlay


def validation_errors(
    resources: Sequence[dict[str, Any]], kubernetes_version: str | None = None
) -> list[str]:
    """Strict schema errors of rendered resources (kubernetes-validate); [] when all valid."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    version = kubernetes_version or latest_version()
    errors = []
    for resource in resources:
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(copy.deepcopy(resource), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path) or "(top)"
            errors.append(f"{name}: {where}: {error.message}")
        except Exception as error:  # unknown kind/version, broken schema
            errors.append(f"{name}: {type(error).__name__}: {error}")
    return errors


# ------------------------------------------------------------------------------- commands


class CommandRunner:
    """Runs external commands, appending each one's command line, output and exit status to
    the run log; a failure raises K3sStepError with the step's name and the stderr tail."""

    def __init__(self, log_path: str | Path, timeout_s: float = 1800.0) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.commands: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock, self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(text)

    def run(
        self,
        step: str,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout_s: float | None = None,
        env: dict[str, str] | None = None,
        quiet: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run `command`; with check, a non-zero exit is a K3sStepError of `step`."""
        command = [str(part) for part in command]
        shown = shlex.join(command)
        timeout = timeout_s or self.timeout_s
        started = time.monotonic()
        if not quiet:
            log.info("k3s %s: %s", step, shown)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=env,
            )
        except FileNotFoundError:
            self._write(f"# {step}\n$ {shown}\n(command not found: {command[0]})\n\n")
            raise K3sStepError(
                step, f"command not found: {command[0]} (is it installed?)"
            ) from None
        except subprocess.TimeoutExpired as error:
            output = _text(error.stdout) + _text(error.stderr)
            self._write(f"# {step}\n$ {shown}\n{output}\n(timed out after {timeout:.0f} s)\n\n")
            raise K3sStepError(
                step, f"`{shown}` did not finish within {timeout:.0f} s", _tail(_text(error.stderr))
            ) from None
        elapsed_s = time.monotonic() - started
        self.commands.append(
            {"step": step, "command": command, "returncode": result.returncode, "s": elapsed_s}
        )
        self._write(
            f"# {step}\n$ {shown}\n{result.stdout}{result.stderr}"
            f"(exit {result.returncode}, {elapsed_s:.1f} s)\n\n"
        )
        if check and result.returncode != 0:
            raise K3sStepError(
                step,
                f"`{shown}` exited with code {result.returncode}",
                _tail(result.stderr or result.stdout),
            )
        return result

    def start(self, step: str, command: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command (port-forward); its output goes to the log."""
        command = [str(part) for part in command]
        self._write(f"# {step} (background)\n$ {shlex.join(command)}\n")
        log.info("k3s %s: %s", step, shlex.join(command))
        handle = self.log_path.open("a", encoding="utf-8")
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise K3sStepError(
                step, f"command not found: {command[0]} (is it installed?)"
            ) from None
        finally:
            handle.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _split(command: str) -> list[str]:
    return shlex.split(command)


def bentoml_command() -> str:
    """`bentoml` of PATH (the venv's first when run by the workflow), else the venv's."""
    from servebench.bento import bentoml_exe

    return shutil.which("bentoml") or bentoml_exe()


# ------------------------------------------------------------------------------- the image


def image_present_command(backend: str, image: str) -> list[str]:
    if backend == "buildah":
        return ["buildah", "inspect", "--type", "image", image]
    return [backend, "image", "inspect", image]


def image_save_command(backend: str, image: str, tar_path: Path) -> list[str]:
    if backend == "buildah":
        return ["buildah", "push", image, f"docker-archive:{tar_path}:{image}"]
    return [backend, "save", "-o", str(tar_path), image]


def ensure_image(
    runner: CommandRunner, settings: dict[str, Any], record: dict[str, Any], work_dir: Path
) -> str:
    """The Bento's image, built by the backend if needed and made available to the cluster."""
    backend = settings["containerize_backend"]
    name, tag = image_name(settings, record["tag"])
    image = f"{name}:{tag}"
    present = runner.run("image-check", image_present_command(backend, image), check=False)
    if present.returncode != 0:
        from servebench.bento import bentoml_env

        runner.run(
            "containerize",
            [bentoml_command(), "containerize", record["tag"], "--backend", backend]
            + ["--image-tag", image],
            env=bentoml_env(record["bentoml_home"]),
        )
    if settings["image_transfer"] == "push":
        if not settings["image_registry"]:
            raise K3sStepError("image-push", "image_transfer push needs deploy.k3s.image_registry")
        runner.run("image-push", [backend, "push", image])
        return image
    k3s = _split(settings["k3s_command"])
    listed = runner.run("image-check-cluster", [*k3s, "ctr", "images", "ls", "-q"], check=False)
    known = set(listed.stdout.split()) if listed.returncode == 0 else set()
    if image in known or f"docker.io/{image}" in known:
        return image
    work_dir.mkdir(parents=True, exist_ok=True)
    tar_path = work_dir / "image.tar"
    try:
        runner.run("image-save", image_save_command(backend, image, tar_path))
        runner.run("image-import", [*k3s, "ctr", "images", "import", str(tar_path)])
    finally:
        tar_path.unlink(missing_ok=True)
    return image


# ------------------------------------------------------------------------------ the server


@dataclass
class K3sServer:
    """A ready deployment: the URL the load generator uses and what it took to get there."""

    variant: str
    image: str
    namespace: str
    url: str
    overlay_dir: Path
    out_dir: Path
    runner: CommandRunner
    settings: dict[str, Any]
    port_forward: PortForward | None = None
    started_at_s: float = field(default_factory=time.time)
    rollout_s: float | None = None

    def kubectl(self, *args: str) -> list[str]:
        return [*_split(self.settings["kubectl"]), "-n", self.namespace, *args]

    def processes(self) -> list[Any]:
        return []  # pods are sampled by kubectl top (K3sMonitor)


def _kubectl(settings: dict[str, Any], *args: str) -> list[str]:
    return [*_split(settings["kubectl"]), "-n", settings["namespace"], *args]


def ensure_namespace(runner: CommandRunner, settings: dict[str, Any]) -> None:
    kubectl = _split(settings["kubectl"])
    namespace = settings["namespace"]
    found = runner.run("namespace", [*kubectl, "get", "namespace", namespace], check=False)
    if found.returncode != 0:
        runner.run("namespace", [*kubectl, "create", "namespace", namespace])


def wait_http_ready(
    url: str, timeout_s: float, step: str, process: subprocess.Popen | None = None
) -> float:
    """Poll GET <url>/readyz until 200; a dead `process` (port-forward) fails at once."""
    started = time.monotonic()
    status = 0
    while time.monotonic() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise K3sStepError(step, f"kubectl port-forward exited with code {process.returncode}")
        status, _ = http_get(url + "/readyz", timeout_s=2.0)
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.25)
    raise K3sStepError(
        step, f"GET {url}/readyz did not answer 200 within {timeout_s:.0f} s (last: {status})"
    )


def stop_process(process: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class PortForward:
    """`kubectl port-forward service/sentiment PORT:3000` on a fixed local port, started again
    (same port, so the load generator's URL stays) whenever it exits until `stop`: kubectl's
    tunnel goes to one pod and ends with it (delete-pod, rollout-restart, a restarted API
    server). Every exit and start is in the run log and in `events`."""

    def __init__(
        self,
        runner: CommandRunner,
        settings: dict[str, Any],
        port: int,
        retry_s: float = PORT_FORWARD_RETRY_S,
    ) -> None:
        self.runner = runner
        self.port = port
        self.retry_s = retry_s
        self.command = _kubectl(settings, "port-forward", f"service/{APP_NAME}") + [
            f"{port}:{CONTAINER_PORT}",
            "--address",
            "127.0.0.1",
        ]
        self.process: subprocess.Popen | None = None
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> subprocess.Popen:
        self.process = self.runner.start("port-forward", self.command)
        return self.process

    def supervise(self) -> PortForward:
        """From now on, start it again when it exits (a thread; until `stop`)."""
        self._thread = threading.Thread(target=self._keep, name="port-forward", daemon=True)
        self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(0.2):
            process = self.process
            if process is None or process.poll() is None:
                continue
            exited_wall_s = time.time()
            log.warning(
                "k3s port-forward exited with code %s; starting it again on port %d in %.1f s",
                process.returncode,
                self.port,
                self.retry_s,
            )
            if self._stop.wait(self.retry_s):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.start()
                except K3sStepError as error:  # kubectl gone: try again, the run goes on
                    log.error("%s", error)
            self.events.append(
                {
                    "exit_code": process.returncode,
                    "exited_wall_s": round(exited_wall_s, 3),
                    "restarted_wall_s": round(time.time(), 3),
                }
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            stop_process(self.process)


def pod_rows(pods: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per pod of `kubectl get pods -o json`: node, phase, readiness, restarts."""
    rows = []
    for pod in pods.get("items", []):
        statuses = pod.get("status", {}).get("containerStatuses", []) or []
        last_reasons = [
            (status.get("lastState", {}).get("terminated") or {}).get("reason")
            for status in statuses
        ]
        rows.append(
            {
                "pod": pod.get("metadata", {}).get("name"),
                "node": pod.get("spec", {}).get("nodeName"),
                "phase": pod.get("status", {}).get("phase"),
                "ready": all(status.get("ready") for status in statuses) if statuses else False,
                "restarts": sum(int(status.get("restartCount", 0)) for status in statuses),
                "last_termination_reason": ";".join(r for r in last_reasons if r) or "",
            }
        )
    return rows


def collect(runner: CommandRunner, settings: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Pods (restarts), events and pod logs into the run folder; never raises."""
    summary: dict[str, Any] = {"pods": [], "restarts": None, "events": None}
    try:
        pods = runner.run(
            "collect", _kubectl(settings, "get", "pods", "-l", SELECTOR, "-o", "json"), check=False
        )
        if pods.returncode == 0:
            rows = pod_rows(json.loads(pods.stdout or "{}"))
            with (out_dir / "k3s_pods.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(
                    handle,
                    fieldnames=[
                        "pod",
                        "node",
                        "phase",
                        "ready",
                        "restarts",
                        "last_termination_reason",
                    ],
                )
                writer.writeheader()
                writer.writerows(rows)
            summary["pods"] = rows
            summary["restarts"] = sum(row["restarts"] for row in rows)
        events = runner.run(
            "collect", _kubectl(settings, "get", "events", "-o", "json"), check=False
        )
        if events.returncode == 0:
            items = json.loads(events.stdout or "{}").get("items", [])
            write_json(out_dir / "k3s_events.json", items)
            summary["events"] = len(items)
        logs = runner.run(
            "collect",
            _kubectl(settings, "logs", "-l", SELECTOR, "--all-containers", "--prefix")
            + ["--tail=-1"],
            check=False,
        )
        with (out_dir / "server.log").open("a", encoding="utf-8") as handle:
            handle.write(logs.stdout + logs.stderr)
    except (K3sStepError, ValueError, OSError) as error:
        log.warning("k3s collect: %s", error)
        summary["error"] = str(error)
    return summary


@contextlib.contextmanager
def k3s_server(
    config: dict[str, Any], record: dict[str, Any], out_dir: str | Path
) -> Iterator[K3sServer]:
    """A ready deployment of the Bento in `record` for the block; torn down on exit."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = record.get("variant") or record["tag"].split(":")[0]
    settings = k3s_settings(config, variant)
    runner = CommandRunner(out / "deploy.log", timeout_s=float(settings["command_timeout_s"]))
    check_one_worker(record)
    image = ensure_image(runner, settings, record, out / "k3s")
    name, _, tag = image.rpartition(":")
    try:
        overlay = stage_run_manifests(
            out, settings, variant, (name, tag), float(config["deploy"]["ready_timeout_s"])
        )
    except kustomize.KustomizeError as error:
        raise K3sStepError("render", str(error)) from None
    ensure_namespace(runner, settings)
    kubectl = _split(settings["kubectl"])
    rollout_timeout_s = float(settings["rollout_timeout_s"])
    forward: PortForward | None = None
    summary: dict[str, Any] = {"variant": variant, "image": image, "access": settings["access"]}
    summary.update({axis: settings[axis] for axis in VARIANT_AXES})
    try:
        runner.run("apply", [*kubectl, "apply", "-k", str(overlay)])
        started = time.monotonic()
        runner.run(
            "rollout",
            _kubectl(settings, "rollout", "status", f"deployment/{APP_NAME}")
            + [f"--timeout={int(rollout_timeout_s)}s"],
            timeout_s=rollout_timeout_s + 60,
        )
        rollout_s = time.monotonic() - started
        if settings["access"] == "node-port":
            url = f"http://{settings['node_address']}:{settings['node_port']}"
        else:
            forward = PortForward(runner, settings, free_port())
            forward.start()
            url = forward.url
        wait_http_ready(url, PORT_FORWARD_READY_S, settings["access"], forward and forward.process)
        if forward is not None:
            forward.supervise()
        summary.update(url=url, rollout_s=round(rollout_s, 3))
        yield K3sServer(
            variant=variant,
            image=image,
            namespace=settings["namespace"],
            url=url,
            overlay_dir=overlay,
            out_dir=out,
            runner=runner,
            settings=settings,
            port_forward=forward,
            rollout_s=rollout_s,
        )
    finally:
        if forward is not None:
            forward.stop()
            summary["port_forward_restarts"] = forward.events
        summary.update(collect(runner, settings, out))
        try:
            runner.run(
                "teardown",
                [*kubectl, "delete", "-k", str(overlay), "--ignore-not-found", "--wait=true"]
                + [f"--timeout={TEARDOWN_TIMEOUT_S}s"],
                timeout_s=TEARDOWN_TIMEOUT_S + 30,
            )
        except K3sStepError as error:
            # Do not hide the error that brought us here; the next apply overwrites leftovers.
            log.error("%s", error)
            summary["teardown_error"] = str(error)
        summary["commands"] = runner.commands
        write_json(out / "k3s.json", summary)


# ----------------------------------------------------------------------------- monitoring


def parse_top(text: str) -> list[tuple[str, float, int]]:
    """(pod, CPU millicores, memory bytes) of `kubectl top pod --no-headers`."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1000, "M": 10**6}
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        pod, cpu, memory = parts[:3]
        try:
            millicores = float(cpu[:-1]) if cpu.endswith("m") else float(cpu) * 1000
            unit = next((u for u in units if memory.endswith(u)), "")
            value = float(memory[: len(memory) - len(unit)]) if unit else float(memory)
        except ValueError:
            continue
        rows.append((pod, millicores, int(value * units.get(unit, 1))))
    return rows


class K3sMonitor(Monitor):
    """server_metrics.csv (scraped /metrics over the server's URL, every second) and
    resources.csv from `kubectl top pod` (metrics-server; every monitor_interval_s): the same
    columns as the local driver, with pods instead of processes."""

    def __init__(self, server: K3sServer, out_dir: str | Path, interval_s: float = 1.0) -> None:
        super().__init__(server, out_dir, interval_s)  # type: ignore[arg-type]
        self.k3s_server = server
        self.top_interval_s = float(server.settings["monitor_interval_s"])
        self._last_top = -float("inf")
        self._last_sample: tuple[int, float, int, int] = (0, 0.0, 0, 0)

    def _sample_resources(self) -> tuple[int, float, int, int]:
        if time.monotonic() - self._last_top < self.top_interval_s:
            return self._last_sample
        self._last_top = time.monotonic()
        try:
            result = self.k3s_server.runner.run(
                "monitor",
                self.k3s_server.kubectl("top", "pod", "-l", SELECTOR, "--no-headers"),
                check=False,
                timeout_s=30,
                quiet=True,
            )
        except K3sStepError:
            return self._last_sample
        rows = parse_top(result.stdout) if result.returncode == 0 else []
        if rows:
            # CPU in percent of one core, as psutil reports it for the local server.
            self._last_sample = (
                len(rows),
                sum(row[1] for row in rows) / 10.0,
                sum(row[2] for row in rows),
                max(row[2] for row in rows),
            )
        return self._last_sample


@contextlib.contextmanager
def k3s_monitor(
    server: K3sServer, out_dir: str | Path, interval_s: float = 1.0
) -> Iterator[Monitor]:
    sampler = K3sMonitor(server, out_dir, interval_s).start()
    try:
        yield sampler
    finally:
        sampler.stop()


# ---------------------------------------------------------------------------------- faults


def fault_commands(server: K3sServer, fault: str) -> list[tuple[str, list[str]]]:
    """(step, command) of a K3s fault; delete-pod names the first pod of the deployment."""
    settings = server.settings
    if fault == "delete-pod":
        pods = server.runner.run(
            "fault-delete-pod",
            server.kubectl(
                "get", "pods", "-l", SELECTOR, "-o", "jsonpath={.items[0].metadata.name}"
            ),
        )
        pod = pods.stdout.strip()
        if not pod:
            raise K3sStepError("fault-delete-pod", "no pod of the deployment to delete")
        return [("fault-delete-pod", server.kubectl("delete", "pod", pod, "--wait=false"))]
    if fault == "rollout-restart":
        return [
            (
                "fault-rollout-restart",
                server.kubectl("rollout", "restart", f"deployment/{APP_NAME}"),
            )
        ]
    if fault == "kill-containerd":
        return [("fault-kill-containerd", _split(settings["faults"]["kill_containerd"]))]
    if fault == "restart-k3s":
        return [("fault-restart-k3s", _split(settings["faults"]["restart_k3s"]))]
    raise ValueError(f"unknown K3s fault {fault!r} (known: {', '.join(K3S_FAULTS)})")


def inject_fault(server: K3sServer, fault: str) -> dict[str, Any]:
    """Inject one K3s fault now; returns what was run and when (for faults.json)."""
    started_s = time.time()
    steps = []
    for step, command in fault_commands(server, fault):
        result = server.runner.run(step, command)
        steps.append({"step": step, "command": command, "returncode": result.returncode})
    return {
        "fault": fault,
        "target": "k3s",
        "injected_at_s": round(started_s, 3),
        "done_at_s": round(time.time(), 3),
        "commands": steps,
    }


FAULT_DESCRIPTIONS = {
    "delete-pod": "kubectl delete pod (the first pod of the deployment)",
    "rollout-restart": "kubectl rollout restart deployment/sentiment",
    "kill-containerd": "SIGKILL K3s's containerd (deploy.k3s.faults.kill_containerd)",
    "restart-k3s": "restart the K3s service (deploy.k3s.faults.restart_k3s)",
}


def fault_injector(fault: str) -> Any:
    """An injector for servebench.faults: the run's K3sServer is `context.extra["server"]`
    (or `context.server`)."""

    def inject(context: Any) -> dict[str, Any]:
        server = (getattr(context, "extra", None) or {}).get("server") or context.server
        facts = inject_fault(server, fault)
        # faults.json turns *_wall_s into times on the schedule's clock.
        return {
            "fault": facts["fault"],
            "commands": facts["commands"],
            "end_wall_s": facts["done_at_s"],
        }

    return inject


def register_k3s_faults() -> list[str]:
    """Register the K3s faults' injectors in servebench.faults' registry; their names."""
    from servebench import faults

    for name in K3S_FAULTS:
        faults.register_fault(
            faults.FaultType(name, ("k3s",), FAULT_DESCRIPTIONS[name], fault_injector(name))
        )
    return list(K3S_FAULTS)


# ---------------------------------------------------------------------------- the command


def _render(args: argparse.Namespace) -> int:
    from servebench.cli import UserError
    from servebench.config import ConfigError, load_config

    try:
        config = load_config(*args.configfile)
    except ConfigError as error:
        raise UserError(str(error)) from None
    variants = args.variant or None
    written = write_committed_overlays(config, args.out, variants)
    failed = False
    for directory in written:
        errors = validation_errors(kustomize.render(directory))
        state = "valid" if not errors else "INVALID:\n  " + "\n  ".join(errors)
        failed = failed or bool(errors)
        print(f"{directory}: {state}")
    if failed:
        raise UserError("some rendered manifests do not validate")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "k3s-render",
        help="write k3s/overlays/<variant>/ from the config and validate what they render to",
    )
    parser.add_argument("--out", type=Path, default=OVERLAYS_DIR, help="overlays folder")
    parser.add_argument(
        "--variant", action="append", default=[], help="variant (default: the experiment's)"
    )
    parser.add_argument(
        "--configfile",
        action="append",
        default=[],
        type=Path,
        help="config file merged over config/config.yaml (repeatable)",
    )
    parser.set_defaults(func=_render)


if __name__ == "__main__":
    from servebench.cli import main

    sys.exit(main(["k3s-render", *sys.argv[1:]]))
