"""The docker target: the variant's image (servebench.deploy.images) in one container on this
machine, run as the variant's K3s pod spec asks, pinned to the server's cores.

    with docker_deployment(target, bento_record, run_dir) as deployment:  # ready
        with deployment.monitored(run_dir):               # server_metrics.csv, resources.csv
            ...                                           # send load to deployment.url

1. render: the variant's K3s overlay (deploy.k3s with the variant's own axes; the K3s target's
   own `stage_run_manifests`) into <run>/k3s/. The container's flags are read from the
   rendered Deployment (`container_settings` -> `docker_run_args`): user, read-only root
   filesystem, dropped capabilities, no privilege escalation, a tmpfs at each emptyDir path,
   the CPU and memory limits, the environment, the port. One settings source: what a pod
   would run with is what the container runs with.
2. run: `docker run --detach` of the Bento's image (`[<registry>/]<repository>/<Bento
   name>:<version>`, built by the workflow's `image` rule), published on 127.0.0.1 only,
   `--cpuset-cpus` the server's cores, restart policy `no` (restart none) or `on-failure`
   (restart supervisor), named and labelled after the run folder: a leftover of an earlier
   attempt of the same job (one killed with SIGKILL) is removed first.
3. ready: GET the startup probe's path (/readyz) until it answers 200, for as long as the
   startup probe allows (period x failureThreshold, derived from deploy.ready_timeout_s); a
   container that exits meanwhile fails at once, with its log's tail.
4. monitor: /metrics every second into server_metrics.csv; resources.csv from the container's
   processes (its cgroup's process list, read with psutil: the local target's columns and
   method).
5. teardown, in `finally` (SIGTERM included, see servebench.deploy): `docker logs` into
   server.log, the container's state into docker.json (exit code, restarts, OOM kill, CPU
   seconds of the container and of Docker's helpers), `docker rm --force` by id.

The container's processes are children of Docker's daemon, not of the job: while the container
runs, its cgroup's CPU time and that of Docker's helpers of it (the containerd shim, the
docker-proxy that forwards its published port) count as the job's own in the foreign-CPU
check of a measurement (servebench.cpus.adopt_cpu). The helpers are pinned to the server's
cores like the container: the proxy copies every request and answer (and the kernel's network
work follows it to its core), the shim every log line; left on the load generator's core they
would take its time unseen by the foreign-CPU check, which counts them as the job's own. Docker has no kubelet: the liveness probe
restarts nothing here (the resilience runs poll /readyz and /livez themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from servebench.cpus import adopt_cpu
from servebench.deploy.images import docker_exe, image_inspect
from servebench.deploy.k3s import kustomize
from servebench.deploy.k3s.manifests import image_name, stage_run_manifests
from servebench.deploy.monitor import Monitor
from servebench.deploy.podspec import container_settings
from servebench.errors import UserError
from servebench.layout import DOCKER_FACTS, SERVER_LOG
from servebench.net import LOOPBACK, free_port, http_get
from servebench.provenance import write_json
from servebench.settings import DockerTarget

READY_POLL_S = 0.25
# The container's state (a `docker inspect`) is checked at most this often while waiting.
STATE_POLL_S = 1.0
LOG_TAIL_LINES = 40
COMMAND_TIMEOUT_S = 120.0
RUN_LABEL = "io.servebench.run"
# Docker's restart policy of each restart setting of a run (servebench.settings.DockerTarget).
RESTART_POLICIES = {"none": "no", "supervisor": "on-failure"}
# Docker's processes that exist for one container only: its CPU time is the container's.
SHIM_PREFIX = "containerd-shim"
PROXY_NAME = "docker-proxy"


class DockerRunError(RuntimeError):
    """A docker command failed, or the container exited or was not ready in time; the message
    has the command's stderr or the container log's tail."""


# docker's --tmpfs defaults to noexec; an emptyDir is a plain writable folder.
TMPFS_OPTIONS = "rw,exec,nosuid,nodev,mode=1777"


def docker_run_args(
    settings: dict[str, Any],
    image: str,
    *,
    host_port: int,
    cpuset: Sequence[int] | None = None,
    name: str | None = None,
    host_address: str = LOOPBACK,
    restart: str = "no",
    labels: dict[str, str] | None = None,
) -> list[str]:
    """`docker run -d ...` of `image` with the pod's settings (container_settings), its port
    published on `host_address` only, pinned to the `cpuset` cores, with Docker's `restart`
    policy (`no`: a container whose main process dies stays down)."""
    args = [docker_exe(), "run", "--detach", "--restart", restart]
    if name:
        args += ["--name", name]
    for key, value in sorted((labels or {}).items()):
        args += ["--label", f"{key}={value}"]
    if settings["user"]:
        args += ["--user", settings["user"]]
    if settings["read_only_root_filesystem"]:
        args.append("--read-only")
    for capability in settings["cap_drop"]:
        args += ["--cap-drop", capability]
    for capability in settings["cap_add"]:
        args += ["--cap-add", capability]
    if settings["no_new_privileges"]:
        args += ["--security-opt", "no-new-privileges"]
    if settings["privileged"]:
        args.append("--privileged")
    for path in settings["writable_paths"]:
        # An emptyDir's sizeLimit is the tmpfs's size (a write past it fails with ENOSPC).
        size = settings["writable_bytes"].get(path)
        args += ["--tmpfs", f"{path}:{TMPFS_OPTIONS}" + (f",size={size}" if size else "")]
    if settings["cpus"]:
        args += ["--cpus", f"{settings['cpus']:g}"]
    if settings["memory_bytes"]:
        # No swap beyond the limit, as on a Kubernetes node.
        args += ["--memory", str(settings["memory_bytes"])]
        args += ["--memory-swap", str(settings["memory_bytes"])]
    if cpuset:
        args += ["--cpuset-cpus", ",".join(str(cpu) for cpu in cpuset)]
    for key, value in sorted(settings["env"].items()):
        args += ["--env", f"{key}={value}"]
    args += ["--publish", f"{host_address}:{host_port}:{settings['port']}"]
    args.append(image)
    return args


# ----------------------------------------------------------------------- docker commands


def docker(
    *args: str, check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """`docker ARGS...`; with check, a failure is a DockerRunError with the stderr's tail."""
    command = [docker_exe(), *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise DockerRunError(
            f"`docker {' '.join(args)}` did not finish in {timeout_s:.0f} s"
        ) from None
    if check and result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-LOG_TAIL_LINES:])
        raise DockerRunError(f"`docker {' '.join(args)}` exited with {result.returncode}: {tail}")
    return result


def container_name(variant: str, out_dir: Path) -> str:
    """A container name of the run folder: the same job's leftover has the same one."""
    digest = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:10]
    return f"servebench-{re.sub(r'[^a-zA-Z0-9_.-]', '-', variant)}-{digest}"


# ------------------------------------------------------------------- cgroups, CPU time


def _cgroup_mounts() -> dict[str, tuple[Path, str]]:
    """Controller ('' for cgroup v2's unified hierarchy) -> (mount point, root in hierarchy)."""
    mounts: dict[str, tuple[Path, str]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
            left, _, right = line.partition(" - ")
            fields, after = left.split(), right.split()
            if len(fields) < 5 or len(after) < 3:
                continue
            if after[0] == "cgroup2":
                mounts.setdefault("", (Path(fields[4]), fields[3]))
            elif after[0] == "cgroup":
                for option in after[2].split(","):
                    mounts.setdefault(option, (Path(fields[4]), fields[3]))
    return mounts


def cgroup_of(pid: int) -> tuple[Path, str] | None:
    """(folder, "v1" | "v2") of the CPU accounting cgroup of a process, None if not found."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    mounts = _cgroup_mounts()
    entries = [line.split(":", 2) for line in lines if line.count(":") >= 2]
    for wanted, version in (("cpuacct", "v1"), ("", "v2")):
        for _, controllers, path in entries:
            listed = controllers.split(",") if controllers else [""]
            if wanted in listed and wanted in mounts:
                mount, root = mounts[wanted]
                if root != "/" and path.startswith(root):
                    path = path[len(root) :]
                folder = mount / path.lstrip("/")
                if folder.is_dir():
                    return folder, version
    return None


def cgroup_cpu_s(folder: Path, version: str) -> float | None:
    """CPU seconds the cgroup's processes used since it was made; None when it is gone."""
    try:
        if version == "v1":
            return int((folder / "cpuacct.usage").read_text(encoding="ascii")) / 1e9
        for line in (folder / "cpu.stat").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None


def cgroup_pids(folder: Path) -> list[int]:
    try:
        return [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def pin_threads(pid: int, cpus: Sequence[int]) -> list[int]:
    """Pin every thread of process `pid` to `cpus` (a Go program such as docker-proxy has
    several; threads it starts later inherit the mask of their starter); the cores its threads
    may use afterwards, read back from the kernel. OSError (not permitted, or it is gone)."""
    wanted = set(cpus)
    allowed: set[int] = set()
    for _ in range(3):  # a thread started meanwhile by a thread not yet pinned: once more
        allowed = set()
        for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                if os.sched_getaffinity(tid) != wanted:
                    os.sched_setaffinity(tid, wanted)
                allowed |= os.sched_getaffinity(tid)
        if allowed == wanted:
            break
    return sorted(allowed)


def _alive(process: psutil.Process | None) -> bool:
    try:
        return (
            process is not None
            and process.is_running()
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def _cpu_s(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


# ------------------------------------------------------------------------- the container


@dataclass
class DockerServer:
    """A running container of the docker target: its id, URL, processes and CPU time."""

    container_id: str
    name: str
    image: str
    host: str
    port: int
    cpus: list[int]
    log_path: Path
    started_at_s: float = field(default_factory=time.time)
    _main: psutil.Process | None = field(default=None, repr=False)
    _cgroup: tuple[Path, str] | None = field(default=None, repr=False)
    # The cgroup's counter starts again at 0 when Docker restarts the container.
    _cgroup_base_s: float = field(default=0.0, repr=False)
    _cgroup_last_s: float = field(default=0.0, repr=False)
    _helpers: dict[int, psutil.Process] = field(default_factory=dict, repr=False)
    _helper_cpu_s: dict[int, tuple[str, float]] = field(default_factory=dict, repr=False)
    # Each helper's pinning: its name, pid and the cores it may use, or why it is not pinned.
    helper_pinning: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _refreshed_at: float = field(default=-1e9, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inspect(self) -> dict[str, Any]:
        """`docker inspect` of the container ({} once it is gone)."""
        result = docker("inspect", self.container_id, check=False)
        if result.returncode != 0:
            return {}
        return json.loads(result.stdout)[0]

    def state(self) -> dict[str, Any]:
        return self.inspect().get("State") or {}

    def main_pid(self) -> int:
        """The host PID of the container's main process (`docker inspect -f {{.State.Pid}}`),
        0 when it does not run."""
        result = docker("inspect", "--format", "{{.State.Pid}}", self.container_id, check=False)
        try:
            return int(result.stdout.strip() or 0)
        except ValueError:
            return 0

    def refresh(self, *, force: bool = False) -> None:
        """Find the main process, its cgroup and Docker's helpers again: after a restart they
        are new (asked of Docker at most once a second unless forced)."""
        with self._lock:
            if not force and time.monotonic() - self._refreshed_at < STATE_POLL_S:
                return
            self._refreshed_at = time.monotonic()
            self._sample_cpu()  # what the old cgroup and helpers used, before they are replaced
            pid = self.main_pid()
            self._main = None
            if pid:
                with contextlib.suppress(psutil.Error):
                    self._main = psutil.Process(pid)
                found = cgroup_of(pid)
                if found is not None:
                    self._cgroup = found
                self._find_helpers(pid)

    def _find_helpers(self, pid: int) -> None:
        found = []
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(pid).parent()
            if parent is not None and parent.name().startswith(SHIM_PREFIX):
                found.append((parent, SHIM_PREFIX))
        port = str(self.port)
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] != PROXY_NAME:
                continue
            cmdline = process.info["cmdline"] or []
            pairs = zip(cmdline, cmdline[1:], strict=False)
            if any(a == "-host-port" and b == port for a, b in pairs):
                found.append((process, PROXY_NAME))
        for process, name in found:
            if process.pid not in self._helpers:
                self.helper_pinning.append(self._pin(process.pid, name))
            self._helpers.setdefault(process.pid, process)
            self._helper_cpu_s.setdefault(process.pid, (name, 0.0))

    def _pin(self, pid: int, name: str) -> dict[str, Any]:
        """Pin a helper of the container to the server's cores (module docstring)."""
        pinning: dict[str, Any] = {"name": name, "pid": pid}
        if not self.cpus:
            pinning["error"] = "no server cores to pin it to"
            return pinning
        try:
            pinning["cpus"] = pin_threads(pid, self.cpus)
        except OSError as error:  # e.g. a rootless daemon's helper: recorded in docker.json
            pinning["error"] = f"{type(error).__name__}: {error}"
        return pinning

    def _running(self) -> bool:
        return _alive(self._main)

    def processes(self) -> list[psutil.Process]:
        """The container's processes (its cgroup's, else the main process's tree)."""
        with self._lock:
            if not self._running():
                self.refresh()
            if not self._running():
                return []
            pids = cgroup_pids(self._cgroup[0]) if self._cgroup else []
            found = []
            if pids:
                for pid in pids:
                    with contextlib.suppress(psutil.Error):
                        found.append(psutil.Process(pid))
            else:
                with contextlib.suppress(psutil.Error):
                    assert self._main is not None
                    found = [self._main, *self._main.children(recursive=True)]
            return [process for process in found if _alive(process)]

    def _sample_cpu(self) -> None:
        if self._cgroup is not None:
            value = cgroup_cpu_s(*self._cgroup)
            if value is not None:
                if value < self._cgroup_last_s:  # a new cgroup: the container was restarted
                    self._cgroup_base_s += self._cgroup_last_s
                self._cgroup_last_s = value
        for pid, process in list(self._helpers.items()):
            used = _cpu_s(process)
            if used is None:
                continue
            name, before = self._helper_cpu_s[pid]
            self._helper_cpu_s[pid] = (name, max(before, used))

    def container_cpu_s(self) -> float:
        with self._lock:
            self._sample_cpu()
            return self._cgroup_base_s + self._cgroup_last_s

    def helper_cpu_s(self) -> dict[str, float]:
        """CPU seconds of Docker's helpers of this container, by process name."""
        with self._lock:
            self._sample_cpu()
            by_name: dict[str, float] = {}
            for name, used in self._helper_cpu_s.values():
                by_name[name] = by_name.get(name, 0.0) + used
            return by_name

    def outside_cpu_s(self) -> float:
        """CPU seconds so far of what runs for this container outside the job's process tree:
        the container (its cgroup) and Docker's helpers of it. Never decreases."""
        with self._lock:
            if not self._running():
                self.refresh()
            return self.container_cpu_s() + sum(self.helper_cpu_s().values())

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        result = docker("logs", "--tail", str(lines), self.container_id, check=False)
        return (result.stdout + result.stderr).strip() or "(the container's log is empty)"

    def write_log(self) -> None:
        """The container's whole log (stdout and stderr, every restart's) into log_path."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w", encoding="utf-8") as handle:
            handle.write(f"# docker logs {self.container_id} ({self.image})\n")
            handle.flush()
            subprocess.run(
                [docker_exe(), "logs", "--timestamps", self.container_id],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )


def wait_ready(server: DockerServer, path: str, timeout_s: float) -> float:
    """Block until GET <path> answers 200; the seconds it took. A container that stops
    meanwhile (it does not restart) fails at once, with its log's tail."""
    started = time.monotonic()
    checked = started
    status = 0
    while time.monotonic() - started < timeout_s:
        status, _ = http_get(server.url + path, timeout_s=1.0)
        if status == 200:
            return time.monotonic() - started
        if time.monotonic() - checked >= STATE_POLL_S:
            checked = time.monotonic()
            state = server.state()
            if not state.get("Running") and not state.get("Restarting"):
                raise DockerRunError(
                    f"container {server.name} ({server.image}) exited with code "
                    f"{state.get('ExitCode')} before it was ready; last lines of its log:\n"
                    f"{server.log_tail()}"
                )
        time.sleep(READY_POLL_S)
    raise DockerRunError(
        f"container {server.name} ({server.image}) was not ready after {timeout_s:.0f} s "
        f"(GET {path}: {status or 'no answer'}); last lines of its log:\n{server.log_tail()}"
    )


def render_pod(
    target: DockerTarget, variant: str, image: tuple[str, str], out_dir: Path
) -> dict[str, Any]:
    """The variant's K3s manifests rendered into <out>/k3s/ (the K3s target's own overlay of
    deploy.k3s and the variant's axes); their Deployment document."""
    overlay = stage_run_manifests(out_dir, target.pod, variant, image, target.ready_timeout_s)
    return next(r for r in kustomize.render(overlay) if r.get("kind") == "Deployment")


def plan_container(
    target: DockerTarget,
    variant: str,
    image: tuple[str, str],
    out_dir: Path,
    *,
    host_port: int,
) -> tuple[dict[str, Any], list[str]]:
    """(container_settings, `docker run` command) of a run: read from the pod spec the K3s
    target would apply for this variant, pinned to the target's cores, named and labelled
    after the run folder."""
    settings = container_settings(render_pod(target, variant, image, out_dir))
    args = docker_run_args(
        settings,
        f"{image[0]}:{image[1]}",
        host_port=host_port,
        cpuset=target.cpus,
        name=container_name(variant, out_dir),
        restart=RESTART_POLICIES[target.restart],
        labels={RUN_LABEL: str(out_dir.resolve()), "io.servebench.variant": variant},
    )
    return settings, args


def bento_image(target: DockerTarget, record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(name, tag, `docker image inspect`) of the Bento's image; a UserError naming the command
    that builds it when the daemon has no image of this Bento under that tag."""
    name, tag = image_name(target.pod, record["tag"])
    inspected = image_inspect(f"{name}:{tag}")
    labels = ((inspected or {}).get("Config") or {}).get("Labels") or {}
    if inspected is None or labels.get("io.servebench.bento") != record["tag"]:
        variant = record.get("variant", "VARIANT")
        raise UserError(
            f"no image {name}:{tag} of the Bento {record['tag']} in the Docker daemon: build it "
            f"with `servebench image build --variant {variant}` (or `snakemake images`)"
        )
    return name, tag, inspected


class DockerDeployment:
    """The Deployment surface (servebench.deploy) of a run on the docker target."""

    def __init__(self, server: DockerServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def alive(self) -> bool:
        """The container runs (a paused one counts: it is stalled, not dead)."""
        state = self.server.state()
        return bool(state.get("Running")) and not state.get("Restarting")

    def monitored(self, out_dir: Path) -> contextlib.AbstractContextManager[Any]:
        return _monitor(self.server, out_dir)


@contextlib.contextmanager
def _monitor(server: DockerServer, out_dir: Path) -> Iterator[Monitor]:
    sampler = Monitor(server, out_dir).start()
    try:
        yield sampler
    finally:
        sampler.stop()


def _teardown(server: DockerServer, facts: dict[str, Any]) -> dict[str, Any]:
    """server.log, the container's last state and CPU seconds; then `docker rm --force`."""
    with contextlib.suppress(Exception):
        server.write_log()
    state = server.state()
    facts.update(
        state={
            key: state.get(key)
            for key in ("Status", "ExitCode", "OOMKilled", "Error", "StartedAt", "FinishedAt")
        },
        restart_count=server.inspect().get("RestartCount"),
        container_cpu_s=round(server.container_cpu_s(), 3),
        helper_cpu_s={k: round(v, 3) for k, v in server.helper_cpu_s().items()},
        helper_pinning=server.helper_pinning,
    )
    removed = docker("rm", "--force", server.container_id, check=False)
    facts["removed"] = removed.returncode == 0
    if removed.returncode != 0:
        facts["remove_error"] = removed.stderr.strip()
    return facts


@contextlib.contextmanager
def docker_deployment(
    target: DockerTarget, record: dict[str, Any], out_dir: str | Path
) -> Iterator[DockerDeployment]:
    """The Bento of `record` in a ready container for the block; removed on the way out."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = record.get("variant") or record["tag"].split(":")[0]
    if target.pod.replicas != 1:
        raise UserError(
            f"the docker target runs one container; variant {variant!r} asks for "
            f"{target.pod.replicas} replicas (deploy.k3s.replicas, variants.{variant}.k3s)"
        )
    name, tag, inspected = bento_image(target, record)
    image = f"{name}:{tag}"
    container = container_name(variant, out)
    docker("rm", "--force", container, check=False)  # an earlier attempt's, killed with SIGKILL
    port = free_port(LOOPBACK)
    settings, args = plan_container(target, variant, (name, tag), out, host_port=port)
    facts: dict[str, Any] = {
        "variant": variant,
        "image": image,
        "image_id": inspected["Id"],
        "bento_tag": record["tag"],
        "name": container,
        "restart": target.restart,
        "run_args": args[1:],
        "manifest": str(out / "k3s" / "manifests.yaml"),
    }
    started = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if started.returncode != 0:
        docker("rm", "--force", container, check=False)
        raise DockerRunError(f"docker run {image} failed: {started.stderr.strip()[-2000:]}")
    server = DockerServer(
        container_id=started.stdout.strip(),
        name=container,
        image=image,
        host=LOOPBACK,
        port=port,
        cpus=list(target.cpus),
        log_path=out / SERVER_LOG,
    )
    facts.update(container_id=server.container_id, host_port=port)
    try:
        server.refresh(force=True)
        with adopt_cpu(server.outside_cpu_s):
            startup = settings["probes"]["startup"] or settings["probes"]["readiness"] or {}
            timeout_s = float(startup.get("period_s", 1)) * float(
                startup.get("failure_threshold", 1)
            )
            facts["ready_s"] = round(
                wait_ready(server, startup.get("path", "/readyz"), timeout_s or 60.0), 3
            )
            yield DockerDeployment(server)
    finally:
        write_json(out / DOCKER_FACTS, _teardown(server, facts))
