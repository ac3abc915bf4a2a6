"""K3s deployment driver: the Bento as an image in the cluster, `kubectl apply -k`, load, teardown.

    with k3s_server(target, bento_record, run_dir) as server:  # deploy + wait for rollout
        with k3s_monitor(server, run_dir):                     # server_metrics.csv, resources.csv
            ...                                                # send load to server.url

The same shape as `deploy.local.local_server`. The steps, each named in errors and in the log:

1. `image-check` / `containerize`: `servebench image build` (servebench.deploy.images, the
   offline build whose image the docker target runs with this pod spec) builds
   `[<registry>/]<repository>/<Bento name>:<Bento version>` unless Docker has that image of
   this Bento already;
2. `image-save` + `image-import` (`k3s ctr images import`, single node) or `image-push`
   (a registry, multi-node), skipped when the cluster's containerd has the image already;
3. `render`: the overlay of the variant (k3s/base + the settings) into `<run>/k3s/`;
4. `namespace`, `apply` (`kubectl apply -k`), `rollout` (`kubectl rollout status`);
5. `port-forward` to 127.0.0.1 (or the NodePort URL), `readyz` until GET /readyz answers 200;
   a port-forward that exits later (its pod went away) is started again on the same port;
6. in `finally`: `collect` (pods with their restarts -> k3s_pods.csv, events -> k3s_events.json,
   pod logs -> server.log) and `teardown` (`kubectl delete -k`).

The K3s faults of the resilience experiments (delete-pod, rollout-restart, kill-containerd,
restart-k3s) are `inject_fault(server, kind)`; servebench.faults.k3s registers them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench.deploy.k3s import kustomize
from servebench.deploy.k3s.commands import CommandRunner, K3sStepError, _split, ensure_image
from servebench.deploy.k3s.manifests import (
    APP_NAME,
    CONTAINER_PORT,
    SELECTOR,
    stage_run_manifests,
)
from servebench.deploy.monitor import Monitor
from servebench.fault_kinds import faults_of
from servebench.layout import K3S_FACTS
from servebench.net import free_port, http_get
from servebench.provenance import write_json
from servebench.settings import K3S_VARIANT_AXES, K3sTarget

log = logging.getLogger(__name__)


PORT_FORWARD_READY_S = 60.0


TEARDOWN_TIMEOUT_S = 180


# Seconds between two starts of a port-forward that exited (its pod went away).
PORT_FORWARD_RETRY_S = 1.0


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
    settings: K3sTarget
    port_forward: PortForward | None = None
    started_at_s: float = field(default_factory=time.time)
    rollout_s: float | None = None

    def kubectl(self, *args: str) -> list[str]:
        return [*_split(self.settings.kubectl), "-n", self.namespace, *args]

    def processes(self) -> list[Any]:
        return []  # pods are sampled by kubectl top (K3sMonitor)


def _kubectl(settings: K3sTarget, *args: str) -> list[str]:
    return [*_split(settings.kubectl), "-n", settings.namespace, *args]


def ensure_namespace(runner: CommandRunner, settings: K3sTarget) -> None:
    kubectl = _split(settings.kubectl)
    namespace = settings.namespace
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
        settings: K3sTarget,
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


def collect(runner: CommandRunner, settings: K3sTarget, out_dir: Path) -> dict[str, Any]:
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


def check_one_worker(record: dict[str, Any]) -> None:
    """A crashed BentoML worker inside a container is not respawned: one worker per pod."""
    workers = int((record.get("settings") or {}).get("workers", 1))
    if workers != 1:
        raise K3sStepError(
            "render",
            f"variant {record.get('variant')!r} has workers: {workers}; the k3s target runs one "
            "BentoML worker per pod (set workers: 1 and scale with deploy.k3s.replicas)",
        )


@contextlib.contextmanager
def k3s_server(
    settings: K3sTarget, record: dict[str, Any], out_dir: str | Path
) -> Iterator[K3sServer]:
    """A ready deployment of the Bento in `record` for the block; torn down on exit."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = record.get("variant") or record["tag"].split(":")[0]
    runner = CommandRunner(out / "deploy.log", timeout_s=float(settings.command_timeout_s))
    check_one_worker(record)
    image = ensure_image(runner, settings, record, out / "k3s")
    name, _, tag = image.rpartition(":")
    try:
        overlay = stage_run_manifests(out, settings, variant, (name, tag), settings.ready_timeout_s)
    except kustomize.KustomizeError as error:
        raise K3sStepError("render", str(error)) from None
    ensure_namespace(runner, settings)
    kubectl = _split(settings.kubectl)
    rollout_timeout_s = float(settings.rollout_timeout_s)
    forward: PortForward | None = None
    summary: dict[str, Any] = {"variant": variant, "image": image, "access": settings.access}
    summary.update({axis: getattr(settings, axis) for axis in K3S_VARIANT_AXES})
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
        if settings.access == "node-port":
            url = f"http://{settings.node_address}:{settings.node_port}"
        else:
            forward = PortForward(runner, settings, free_port())
            forward.start()
            url = forward.url
        wait_http_ready(url, PORT_FORWARD_READY_S, settings.access, forward and forward.process)
        if forward is not None:
            forward.supervise()
        summary.update(url=url, rollout_s=round(rollout_s, 3))
        yield K3sServer(
            variant=variant,
            image=image,
            namespace=settings.namespace,
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
        write_json(out / K3S_FACTS, summary)


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
        self.top_interval_s = float(server.settings.monitor_interval_s)
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
        return [("fault-kill-containerd", _split(settings.faults["kill_containerd"]))]
    if fault == "restart-k3s":
        return [("fault-restart-k3s", _split(settings.faults["restart_k3s"]))]
    raise ValueError(f"unknown K3s fault {fault!r} (known: {', '.join(faults_of('k3s'))})")


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


class K3sDeployment:
    """The Deployment surface (servebench.deploy) of a K3s run."""

    def __init__(self, server: K3sServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def alive(self) -> bool:
        """The deployment answers /readyz (pods come and go; the service is what counts)."""
        return http_get(self.server.url + "/readyz", timeout_s=2.0)[0] == 200

    def monitored(self, out_dir: Path) -> contextlib.AbstractContextManager[Any]:
        return k3s_monitor(self.server, out_dir)


@contextlib.contextmanager
def k3s_deployment(
    settings: K3sTarget, record: dict[str, Any], out_dir: Path
) -> Iterator[K3sDeployment]:
    with k3s_server(settings, record, out_dir) as server:
        yield K3sDeployment(server)
