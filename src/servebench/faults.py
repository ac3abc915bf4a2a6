"""Resilience experiments: a fault injected at a scheduled time into a running open-loop load test.

One job (workflow/rules/resilience.smk) = one (target, variant, fault, repetition):

    deploy the Bento -> start the load test (the steady scenario by default)
    -> a thread waits for the schedule's start, then injects the fault at `at_s`
    -> /readyz and /livez are polled once a second all along (probes.csv)
    -> after the run: faults.json with the injection time and the measured figures

Faults live in a registry (`FAULTS`): a name, the targets it applies to and an `inject`
function called from the fault thread with a `FaultContext`. The local target's faults are
here; the K3s target's (delete-pod, rollout-restart, kill-containerd, restart-k3s) are the K3s
driver's (`servebench.deploy.k3s.fault_injector`), registered here too. `run_fault` deploys by
deploy.target: `local` (ServerHandle: `bentoml serve` here, restarts on the same port) or `k3s`
(`servebench.deploy.k3s.k3s_server`: the run's K3sServer is `context.extra["server"]`); the
load, the probes, the fault thread and the measurement are the same for both.

The measured figures (`measure_fault`) come from the per-request log (scheduled, sent, done,
outcome, corrected latency) and the probes, all on the schedule's clock (seconds since the
schedule's start t0):
- requests not ok by outcome, time to the first error and to the first ok answer after the
  fault, peak corrected latency, requests lost (scheduled but never recorded: must be 0);
- time to recover: the earliest time T after the injection from which, for `quiet_s`
  seconds, every rolling `window_s` p99 (corrected latency of the ok requests scheduled in
  [w - window_s, w)) stays within the pre-fault band and no request in those windows failed.
  None ("not recovered") when the run ends first. The pre-fault band is the highest rolling
  p99 before the fault times (1 + band_tolerance).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from servebench import experiment
from servebench.deploy import k3s as k3s_driver
from servebench.deploy.local import (
    LocalServer,
    _sigterm_raises,
    http_get,
    monitor,
    start_server,
    stop_server,
    wait_ready,
)
from servebench.provenance import environment, stable_hash, write_json

log = logging.getLogger(__name__)

PROBE_PATHS = ("/readyz", "/livez")
PROBE_TIMEOUT_S = 1.0
# How long the fault thread waits for the load generator's start time t0 before giving up.
T0_WAIT_S = 120.0
RECOVERY_STEP_S = 0.1
RESTART_POLICIES = ("none", "supervisor")


class FaultError(RuntimeError):
    """A fault could not be injected (no worker to kill, unknown fault, ...)."""


# ------------------------------------------------------------------------------- registry


@dataclass
class FaultContext:
    """What an injector works on. `server` is the current LocalServer (local target);
    `restart` the variant's restart policy; `restart_server` starts a fresh server on the same
    port and makes it current (the driver standing in for a restart policy)."""

    target: str
    params: dict[str, Any]
    restart: str = "none"
    server: LocalServer | None = None
    restart_server: Callable[[], LocalServer] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    extra: dict[str, Any] = field(default_factory=dict)


# An injector returns facts about the injection (pids, end time as wall clock 'end_wall_s').
Injector = Callable[[FaultContext], dict[str, Any]]


@dataclass(frozen=True)
class FaultType:
    name: str
    targets: tuple[str, ...]
    description: str
    inject: Injector | None = None
    issue: str | None = None  # where an unimplemented fault is being built


FAULTS: dict[str, FaultType] = {}


def register_fault(fault: FaultType) -> FaultType:
    """Add or replace a fault type (the K3s target registers its injectors this way)."""
    FAULTS[fault.name] = fault
    return fault


def fault_type(name: str, target: str) -> FaultType:
    """The fault `name` for `target`; FaultError when unknown, for another target or not built."""
    if name not in FAULTS:
        raise FaultError(f"unknown fault kind {name!r} (known: {', '.join(sorted(FAULTS))})")
    fault = FAULTS[name]
    if target not in fault.targets:
        raise FaultError(wrong_target_message(name, target))
    if fault.inject is None:
        raise FaultError(f"fault {name!r} is not implemented yet ({fault.issue or 'to do'})")
    return fault


# What a target's faults act on (the reason a fault of one target cannot run on another).
TARGET_FAULTS_ACT_ON = {
    "local": "the processes of a `bentoml serve` on this machine",
    "k3s": "a K3s cluster (its pods, its deployment or its node's services)",
}


def faults_of(target: str) -> list[str]:
    """The registered fault kinds of `target`."""
    return [name for name, fault in FAULTS.items() if target in fault.targets]


def wrong_target_message(name: str, target: str) -> str:
    """Why fault `name` does not run on `target`, and what does."""
    fault = FAULTS[name]
    acts_on = " or ".join(TARGET_FAULTS_ACT_ON.get(t, f"the {t} target") for t in fault.targets)
    return (
        f"fault {name!r} applies to the {'/'.join(fault.targets)} target only (it acts on "
        f"{acts_on}), not to deploy.target {target!r}; the faults of {target!r}: "
        f"{', '.join(faults_of(target)) or 'none'}"
    )


def worker_processes(server: LocalServer) -> list[psutil.Process]:
    """BentoML's worker processes (every process of the server but the `bentoml serve` one),
    oldest pid first."""
    workers = [p for p in server.processes() if p.pid != server.pid]
    named = []
    for process in workers:
        with contextlib.suppress(psutil.Error):
            if "worker" in " ".join(process.cmdline()):
                named.append(process)
    return sorted(named or workers, key=lambda p: p.pid)


def _one_worker(context: FaultContext) -> psutil.Process:
    assert context.server is not None
    workers = worker_processes(context.server)
    if not workers:
        raise FaultError(f"no BentoML worker process found under pid {context.server.pid}")
    index = int(context.params.get("worker_index", 0))
    return workers[index % len(workers)]


def inject_kill_worker(context: FaultContext) -> dict[str, Any]:
    """SIGKILL one worker; BentoML's supervisor (the `bentoml serve` process) respawns it."""
    worker = _one_worker(context)
    os.kill(worker.pid, signal.SIGKILL)
    return {"killed_pids": [worker.pid]}


def inject_kill_server(context: FaultContext) -> dict[str, Any]:
    """SIGKILL every process of the server. Restart `none`: it stays down (a bare container
    without a restart policy); `supervisor`: the driver starts it again on the same port."""
    server = context.server
    assert server is not None
    processes = server.processes()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pid, signal.SIGKILL)
    for process in processes:  # workers in sessions of their own are not in the group
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)
    with contextlib.suppress(Exception):
        server.process.wait(timeout=10)
    facts: dict[str, Any] = {"killed_pids": sorted(p.pid for p in processes)}
    if context.restart == "supervisor" and context.restart_server is not None:
        delay_s = float(context.params.get("restart_delay_s", 0.0))
        if context.stop.wait(delay_s):
            return facts
        facts["restart_started_wall_s"] = time.time()
        new_server = context.restart_server()
        facts["restarted_pid"] = new_server.pid
        facts["restart_ready_wall_s"] = time.time()
        facts["end_wall_s"] = facts["restart_ready_wall_s"]
    return facts


def inject_stall(context: FaultContext) -> dict[str, Any]:
    """SIGSTOP one worker for `duration_s`, then SIGCONT (always, also when interrupted)."""
    worker = _one_worker(context)
    duration_s = float(context.params.get("duration_s", 5.0))
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        context.stop.wait(duration_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)
    return {"stalled_pids": [worker.pid], "end_wall_s": time.time()}


for _fault in (
    FaultType(
        "kill-worker",
        ("local",),
        "SIGKILL one BentoML worker process; BentoML's supervisor respawns it",
        inject_kill_worker,
    ),
    FaultType(
        "kill-server",
        ("local",),
        "SIGKILL every process of the server; restart none: stays down, supervisor: the "
        "driver restarts it on the same port",
        inject_kill_server,
    ),
    FaultType("stall", ("local",), "SIGSTOP one worker for duration_s, then SIGCONT", inject_stall),
    # The K3s target's faults: the K3s driver's commands (docs/k3s.md), run on its K3sServer.
    *(
        FaultType(
            name,
            ("k3s",),
            k3s_driver.FAULT_DESCRIPTIONS[name],
            k3s_driver.fault_injector(name),
        )
        for name in k3s_driver.K3S_FAULTS
    ),
):
    register_fault(_fault)


# ------------------------------------------------------------------------------ the matrix


@dataclass(frozen=True)
class FaultRunSpec:
    target: str
    variant: str  # a resilience variant (resilience.variants), not necessarily a Bento variant
    fault: str  # a fault name (resilience.faults)
    repetition: int

    def path(self, results_dir: str | Path) -> Path:
        return (
            Path(results_dir)
            / "resilience"
            / self.target
            / self.variant
            / self.fault
            / f"rep{self.repetition}"
        )


def resilience_matrix(config: dict[str, Any]) -> list[FaultRunSpec]:
    """Every resilience run (none when resilience.enabled is false), fault by fault, variants
    interleaved A B B A across repetitions."""
    resilience = config.get("resilience") or {}
    if not resilience.get("enabled", False):
        return []
    target = config["deploy"]["target"]
    variants = list(resilience.get("variants") or {})
    specs = []
    for fault in faults_for_target(config):
        for repetition in range(int(resilience.get("repetitions", 1))):
            for variant in experiment.abba_order(variants, repetition):
                specs.append(FaultRunSpec(target, variant, fault, repetition))
    return specs


def faults_for_target(config: dict[str, Any]) -> list[str]:
    """The configured faults (names) whose kind applies to deploy.target: a profile for another
    target inherits config.yaml's faults by the merge, so the others are skipped, not errors."""
    target = config["deploy"]["target"]
    names = []
    for name, fault in ((config.get("resilience") or {}).get("faults") or {}).items():
        kind = FAULTS.get(fault.get("kind", name))
        if kind is None or target in kind.targets:
            names.append(name)
    return names


def fault_seed(config: dict[str, Any], fault: str, repetition: int) -> int:
    """The schedule seed of a fault run: the same for every variant of (fault, repetition)."""
    return experiment.derived_seed(config["seed"], "resilience", fault, "rep", repetition)


def check_resilience_config(config: dict[str, Any]) -> list[str]:
    """Problems of the resilience section that the schema cannot see (one line each)."""
    resilience = config.get("resilience") or {}
    if not resilience.get("enabled", False):
        return []
    problems = []
    target = config["deploy"]["target"]
    scenario = resilience.get("scenario")
    if scenario not in config.get("scenarios", {}):
        problems.append(f"resilience.scenario: no scenario named {scenario!r}")
    for name, variant in (resilience.get("variants") or {}).items():
        if variant.get("variant") not in config.get("variants", {}):
            problems.append(
                f"resilience.variants.{name}.variant: no variant named {variant.get('variant')!r}"
            )
    duration_s = float(resilience.get("duration_s", 0))
    for name, fault in (resilience.get("faults") or {}).items():
        if name not in faults_for_target(config):  # skipped on this target: never runs
            continue
        try:
            fault_type(fault.get("kind", name), target)
        except FaultError as error:
            problems.append(f"resilience.faults.{name}: {error}")
        if float(fault.get("at_s", 0)) >= duration_s:
            problems.append(f"resilience.faults.{name}.at_s must be before the run's end")
    configured = resilience.get("faults") or {}
    if configured and not faults_for_target(config):
        # Faults of another target are skipped (a profile cannot remove config.yaml's faults),
        # but a resilience stage without a single fault of its target is a mistake.
        others = "; ".join(
            f"{name}: {'/'.join(FAULTS[fault.get('kind', name)].targets)} only"
            for name, fault in configured.items()
        )
        problems.append(
            f"resilience.faults: none applies to deploy.target {target!r} ({others}); add one "
            f"of {', '.join(faults_of(target))} or set resilience.enabled: false"
        )
    return problems


# ----------------------------------------------------------------------------- measurement


def rolling_p99_ms(
    scheduled_s: np.ndarray,
    latency_ms: np.ndarray,
    ends_s: np.ndarray,
    window_s: float,
) -> np.ndarray:
    """p99 of `latency_ms` over the requests scheduled in [end - window_s, end), for each end
    (NaN for an empty window). `scheduled_s` must be sorted."""
    lower = np.searchsorted(scheduled_s, ends_s - window_s, side="left")
    upper = np.searchsorted(scheduled_s, ends_s, side="left")
    result = np.full(len(ends_s), math.nan)
    for index, (first, last) in enumerate(zip(lower, upper, strict=True)):
        if last > first:
            result[index] = float(np.percentile(latency_ms[first:last], 99))
    return result


def _observed_s(requests: pd.DataFrame) -> np.ndarray:
    """When the client saw each request end (done, else sent, else scheduled)."""
    done = requests["done_s"].to_numpy(dtype=float)
    sent = requests["sent_s"].to_numpy(dtype=float)
    scheduled = requests["scheduled_s"].to_numpy(dtype=float)
    return np.where(np.isfinite(done), done, np.where(np.isfinite(sent), sent, scheduled))


def _none_if_nan(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def measure_fault(
    requests: pd.DataFrame,
    *,
    start_s: float,
    end_s: float | None = None,
    planned: int | None = None,
    warmup_s: float = 0.0,
    horizon_s: float | None = None,
    window_s: float = 5.0,
    quiet_s: float = 10.0,
    band_tolerance: float = 0.25,
    probes: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The measured figures of one fault (see the module's docstring); times in seconds on the
    schedule's clock, durations relative to the injection `start_s`."""
    end_s = start_s if end_s is None else end_s
    table = requests.sort_values("scheduled_s", kind="stable").reset_index(drop=True)
    scheduled = table["scheduled_s"].to_numpy(dtype=float)
    outcome = table["outcome"].astype("string").fillna("missing").to_numpy(dtype=str)
    latency = table["latency_ms"].to_numpy(dtype=float)
    ok = outcome == "ok"
    observed = _observed_s(table)
    horizon = float(horizon_s) if horizon_s is not None else float(np.nanmax(scheduled))

    recorded = int(len(table))
    lost = (planned - recorded if planned is not None else 0) + int((outcome == "missing").sum())
    not_ok = ~ok
    counts = pd.Series(outcome[not_ok]).value_counts().to_dict() if not_ok.any() else {}
    after = observed >= start_s
    errors_after = not_ok & after
    first_error = float(observed[errors_after].min()) - start_s if errors_after.any() else None
    sent = table["sent_s"].to_numpy(dtype=float)
    # "Answers again": an ok answer to a request sent once the fault showed, i.e. after the
    # first error seen after the injection (a K3s pod serves on for a while after its delete
    # command), or after the injection when nothing failed.
    since_s = start_s + first_error if first_error is not None else start_s
    ok_sent_after = ok & (sent >= since_s)
    first_ok = (
        float(table["done_s"].to_numpy(dtype=float)[ok_sent_after].min()) - start_s
        if ok_sent_after.any()
        else None
    )
    affected = np.isfinite(latency) & (observed >= start_s)
    peak_ms = float(latency[affected].max()) if affected.any() else None

    # The pre-fault band: rolling p99 of the ok requests after the warm-up, before the fault.
    step = RECOVERY_STEP_S
    ok_scheduled, ok_latency = scheduled[ok], latency[ok]
    pre_ends = np.arange(warmup_s + window_s, start_s + 1e-9, 1.0)
    pre_p99 = rolling_p99_ms(ok_scheduled, ok_latency, pre_ends, window_s)
    pre_p99 = pre_p99[np.isfinite(pre_p99)]
    if not len(pre_p99):  # the fault comes too early for a full window: all pre-fault requests
        before = ok & (scheduled >= warmup_s) & (scheduled < start_s)
        pre_p99 = np.array([np.percentile(latency[before], 99)]) if before.any() else pre_p99
    band_ms = float(pre_p99.max()) * (1.0 + band_tolerance) if len(pre_p99) else None

    recovery_s: float | None = None
    reason = None
    if band_ms is None:
        reason = "no ok request before the fault: no pre-fault band"
    else:
        ends = np.arange(start_s, horizon + step / 2, step)
        p99 = rolling_p99_ms(ok_scheduled, ok_latency, ends, window_s)
        bad_scheduled = scheduled[not_ok]
        bad_in_window = np.searchsorted(bad_scheduled, ends, side="left") - np.searchsorted(
            bad_scheduled, ends - window_s, side="left"
        )
        any_in_window = np.searchsorted(scheduled, ends, side="left") - np.searchsorted(
            scheduled, ends - window_s, side="left"
        )
        # A window is good without failures and with its p99 in the band (an empty window: no
        # traffic to judge, counts as good; a window of failures only is bad).
        good = (bad_in_window == 0) & ((any_in_window == 0) | (np.nan_to_num(p99) <= band_ms))
        span = int(round(quiet_s / step))
        # bad_after[i]: a bad window in ends[i : i + span + 1].
        bad_cumulative = np.concatenate([[0], np.cumsum(~good)])
        for index in range(len(ends)):
            last = index + span
            if last >= len(ends):
                reason = f"the run ended before {quiet_s:g} s of good windows"
                break
            if bad_cumulative[last + 1] - bad_cumulative[index] == 0:
                recovery_s = float(ends[index] - start_s)
                break
    result: dict[str, Any] = {
        "requests_planned": planned,
        "requests_recorded": recorded,
        "requests_lost": lost,
        "requests_not_ok": int(not_ok.sum()),
        "requests_not_ok_after_fault": int(errors_after.sum()),
        "not_ok_by_outcome": {str(key): int(value) for key, value in counts.items()},
        "time_to_first_error_s": _none_if_nan(first_error),
        "time_to_first_ok_s": _none_if_nan(first_ok),
        "recovered": recovery_s is not None,
        "time_to_recover_s": _none_if_nan(recovery_s),
        "not_recovered_reason": reason if recovery_s is None else None,
        "pre_fault_band_p99_ms": _none_if_nan(band_ms),
        "peak_latency_ms": _none_if_nan(peak_ms),
        "recovery_rule": {
            "window_s": window_s,
            "quiet_s": quiet_s,
            "band_tolerance": band_tolerance,
        },
    }
    result.update(probe_figures(probes, start_s))
    return result


def probe_figures(probes: pd.DataFrame | None, start_s: float) -> dict[str, Any]:
    """What a /readyz probe saw after the fault: first failure, first success after it, and the
    number of failed probes."""
    figures: dict[str, Any] = {
        "readyz_first_failure_s": None,
        "readyz_back_s": None,
        "readyz_failed_probes": None,
        "livez_failed_probes": None,
    }
    if probes is None or not len(probes):
        return figures
    for path, key in (("/readyz", "readyz"), ("/livez", "livez")):
        rows = probes[(probes["path"] == path) & (probes["t_s"] >= start_s)].sort_values("t_s")
        failed = rows[~rows["ok"].astype(bool)]
        figures[f"{key}_failed_probes"] = int(len(failed))
        if key == "readyz" and len(failed):
            first = float(failed["t_s"].iloc[0])
            figures["readyz_first_failure_s"] = round(first - start_s, 3)
            back = rows[(rows["t_s"] > first) & rows["ok"].astype(bool)]
            if len(back):
                figures["readyz_back_s"] = round(float(back["t_s"].iloc[0]) - start_s, 3)
    return figures


# ---------------------------------------------------------------------------------- probes


class Prober:
    """GET /readyz and /livez once per `interval_s` (each in a thread of its own, so a hung
    server does not delay the other probe); rows kept in memory, written by `write`."""

    def __init__(
        self,
        url_of: Callable[[], str],
        interval_s: float = 1.0,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.url_of = url_of
        self.interval_s = interval_s
        self.cpus = list(cpus or [])
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(path,), name=f"probe{path}", daemon=True)
            for path in PROBE_PATHS
        ]

    def start(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, path: str) -> None:
        if self.cpus:  # never on the server's cores (Linux: this thread only)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        next_at = time.monotonic()
        while not self._stop.is_set():
            sent = time.time()
            status, _ = http_get(self.url_of() + path, timeout_s=PROBE_TIMEOUT_S)
            row = {
                "wall_s": round(sent, 4),
                "path": path,
                "status": status,
                "ok": status == 200,
                "response_ms": round((time.time() - sent) * 1000.0, 2),
            }
            with self._lock:
                self.rows.append(row)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def frame(self, t0_wall: float | None) -> pd.DataFrame:
        with self._lock:
            frame = pd.DataFrame(
                self.rows, columns=["wall_s", "path", "status", "ok", "response_ms"]
            )
        frame.insert(1, "t_s", frame["wall_s"] - t0_wall if t0_wall is not None else math.nan)
        return frame.sort_values(["wall_s", "path"]).reset_index(drop=True)


# ------------------------------------------------------------------------------- the driver


def read_t0_wall(raw_dir: Path) -> float | None:
    """The schedule's start (wall clock) that the load generator's workers report."""
    for path in sorted(Path(raw_dir).glob("status_worker*.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            value = json.loads(path.read_text()).get("t0_wall")
            if value:
                return float(value)
    return None


class ServerHandle:
    """The current server of a run; a restart replaces it (same port), every one is stopped."""

    def __init__(self, record: dict[str, Any], config: dict[str, Any], log_dir: Path) -> None:
        self.record = record
        self.config = config
        self.log_dir = log_dir
        self.servers: list[LocalServer] = []
        self.allowed_cpus = os.sched_getaffinity(0)  # of the job, before any thread is pinned
        self.on_restart: list[Callable[[LocalServer], None]] = []

    @property
    def current(self) -> LocalServer:
        return self.servers[-1]

    def start(self, port: int | None = None) -> LocalServer:
        name = "server.log" if not self.servers else f"server.restart{len(self.servers)}.log"
        server = start_server(
            self.record["tag"],
            bentoml_home=self.record["bentoml_home"],
            log_path=self.log_dir / name,
            cpus=self.config["cpus"]["server"],
            port=port,
        )
        self.servers.append(server)
        wait_ready(server, float(self.config["deploy"]["ready_timeout_s"]))
        for callback in self.on_restart:
            callback(server)
        return server

    def restart(self) -> LocalServer:
        """A fresh server on the same port; callable from a thread pinned to the generator's
        cores (the server is pinned to its own cores by start_server)."""
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.allowed_cpus)
        try:
            return self.start(port=self.current.port)
        finally:
            os.sched_setaffinity(0, pinned)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                stop_server(server)


@contextlib.contextmanager
def _served(handle: ServerHandle) -> Iterator[ServerHandle]:
    try:
        handle.start()
        yield handle
    finally:
        handle.stop_all()


@contextlib.contextmanager
def _local_deployment(
    config: dict[str, Any], record: dict[str, Any], out: Path, context: FaultContext
) -> Iterator[Callable[[], str]]:
    """`bentoml serve` here (ServerHandle), monitored; yields the current server's URL. The
    context follows a restarted server (kill-server with restart supervisor)."""
    handle = ServerHandle(record, config, out)
    with _served(handle):
        context.server = handle.current
        context.restart_server = handle.restart
        with monitor(handle.current, out) as sampler:

            def follow(server: LocalServer) -> None:
                sampler.server = server
                context.server = server

            handle.on_restart.append(follow)
            yield lambda: handle.current.url


@contextlib.contextmanager
def _k3s_deployment(
    config: dict[str, Any], record: dict[str, Any], out: Path, context: FaultContext
) -> Iterator[Callable[[], str]]:
    """The K3s driver's deployment (image, apply, rollout, port-forward or NodePort),
    monitored; the K3sServer is `context.extra["server"]` for the K3s faults' injectors. On
    the way out the driver collects pods (restarts), events and logs and tears down."""
    with k3s_driver.k3s_server(config, record, out) as server:
        context.extra["server"] = server
        with k3s_driver.k3s_monitor(server, out):
            yield lambda: server.url


def _k3s_facts(out: Path) -> dict[str, Any] | None:
    """What the K3s driver wrote into k3s.json after teardown: pod restarts, events, the
    port-forward's restarts, the deployment's axes."""
    path = out / "k3s.json"
    if not path.is_file():
        return None
    with contextlib.suppress(OSError, json.JSONDecodeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("replicas", "max_replicas", "pdb_min_available", "access", "restarts", "events")
        facts = {key: data.get(key) for key in keys}
        facts["port_forward_restarts"] = len(data.get("port_forward_restarts") or [])
        facts["pods"] = data.get("pods")
        return facts
    return None


class FaultThread(threading.Thread):
    """Waits for the schedule's start t0, sleeps until t0 + at_s, injects the fault."""

    def __init__(
        self,
        fault: FaultType,
        context: FaultContext,
        raw_dir: Path,
        at_s: float,
        cpus: Sequence[int] | None = None,
    ):
        super().__init__(name=f"fault-{fault.name}", daemon=True)
        self.cpus = list(cpus or [])
        self.fault = fault
        self.context = context
        self.raw_dir = raw_dir
        self.at_s = at_s
        self.t0_wall: float | None = None
        self.record: dict[str, Any] = {}
        self.error: str | None = None

    def run(self) -> None:
        if self.cpus:  # never on the server's cores (Linux: this thread only)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        try:
            deadline = time.monotonic() + T0_WAIT_S
            while self.t0_wall is None:
                if self.context.stop.is_set() or time.monotonic() > deadline:
                    self.error = "the load generator never reported its start time"
                    return
                self.t0_wall = read_t0_wall(self.raw_dir)
                self.context.stop.wait(0.05)
            if self.context.stop.wait(max(0.0, self.t0_wall + self.at_s - time.time())):
                self.error = "the load test ended before the fault's time"
                return
            injected = time.time()
            facts = self.fault.inject(self.context) if self.fault.inject else {}
            self.record = {"injected_wall_s": injected, **facts}
        except Exception as error:  # reported in faults.json, the run goes on
            self.error = f"{type(error).__name__}: {error}"
            log.error("fault %s failed: %s", self.fault.name, traceback.format_exc())
        # Stay until the run ends: a server restarted from this thread gets SIGTERM from the
        # kernel when its parent thread exits (PR_SET_PDEATHSIG, servebench.deploy.local).
        self.context.stop.wait()


def fault_entry(
    name: str,
    kind: str,
    params: dict[str, Any],
    restart: str,
    record: dict[str, Any],
    t0_wall: float | None,
    error: str | None,
) -> dict[str, Any]:
    """faults.json's entry of one fault: kind, window on the schedule's clock, parameters."""
    entry: dict[str, Any] = {"name": name, "kind": kind, "restart": restart, "params": params}
    injected = record.get("injected_wall_s")
    if injected is not None and t0_wall is not None:
        entry["start_s"] = round(injected - t0_wall, 4)
        end_wall = record.get("end_wall_s", injected)
        entry["end_s"] = round(end_wall - t0_wall, 4)
    else:
        entry["start_s"] = entry["end_s"] = None
    for key, value in record.items():
        if key.endswith("_wall_s") and key != "injected_wall_s" and t0_wall is not None:
            entry[key.replace("_wall_s", "_s")] = round(value - t0_wall, 4)
        elif not key.endswith("_wall_s"):
            entry[key] = value
    entry["injected"] = injected is not None
    entry["error"] = error
    return entry


def _read_requests(out: Path) -> pd.DataFrame | None:
    path = out / "requests.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def _planned(out: Path) -> int | None:
    with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
        return len(json.loads((out / "plan.json").read_text())["scheduled_s"])
    return None


def run_fault(
    config: dict[str, Any],
    spec: FaultRunSpec,
    bento_record_path: str | Path,
    payloads_path: str | Path,
    out_dir: str | Path,
    reference_capacity_path: str | Path | None = None,
) -> dict[str, Any]:
    """One resilience run; writes the load test's files, probes.csv, faults.json, meta.json
    (last). A failed run is recorded, not raised. Returns the faults.json content."""
    from servebench.loadgen.runner import run_loadtest, settings_from_config
    from servebench.runs import _clear, read_json

    out = Path(out_dir)
    _clear(out)
    resilience = config["resilience"]
    variant = resilience["variants"][spec.variant]
    fault_config = dict(resilience["faults"][spec.fault])
    kind = fault_config.pop("kind", spec.fault)
    at_s = float(fault_config.pop("at_s"))
    restart = variant.get("restart", "none")
    scenario = config["scenarios"][resilience["scenario"]]
    record = read_json(bento_record_path)
    seed = fault_seed(config, spec.fault, spec.repetition)
    duration_s = float(resilience["duration_s"])
    warmup_s = float(resilience["warmup_s"])
    rule = resilience["recovery"]
    started = time.time()
    rate_rps: float | None = None
    summary: dict[str, Any] = {}
    thread: FaultThread | None = None
    prober: Prober | None = None
    run_error = None
    try:
        fault = fault_type(kind, spec.target)
        if resilience.get("rate_rps"):
            rate_rps = float(resilience["rate_rps"])
        else:
            capacity = None
            if reference_capacity_path is not None:
                capacity = read_json(reference_capacity_path).get("capacity_rps")
            rate_rps = experiment.scenario_rate_rps(scenario, capacity)
        context = FaultContext(target=spec.target, params=fault_config, restart=restart)
        deployment = _k3s_deployment if spec.target == "k3s" else _local_deployment
        # SIGTERM (Snakemake stopping the job) raises, so that every server is stopped.
        with _sigterm_raises(), deployment(config, record, out, context) as url_of:
            prober = Prober(
                url_of, float(resilience["probe_interval_s"]), config["cpus"]["loadgen"]
            ).start()
            thread = FaultThread(fault, context, out / "raw", at_s, config["cpus"]["loadgen"])
            thread.start()
            try:
                summary = run_loadtest(
                    host=url_of(),
                    out_dir=out,
                    seed=seed,
                    arrival=scenario["arrival"],
                    rate_rps=rate_rps,
                    cv=scenario.get("cv"),
                    shape=scenario.get("shape"),
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    payloads=payloads_path,
                    progress=False,
                    **settings_from_config(config),
                )
            finally:
                context.stop.set()
                thread.join(timeout=float(config["deploy"]["ready_timeout_s"]) + 30)
                prober.stop()
    except (KeyboardInterrupt, SystemExit):
        raise
    except FaultError as error:  # a fault of another target: the message says it all
        log.error("resilience run %s not run: %s", out, error)
        run_error = f"{type(error).__name__}: {error}"
    except Exception as error:  # a failed run is data, not a stopped workflow
        log.error("resilience run %s failed: %s\n%s", out, error, traceback.format_exc())
        run_error = f"{type(error).__name__}: {error}"

    t0_wall = thread.t0_wall if thread is not None else None
    if prober is not None:
        prober.frame(t0_wall).to_csv(out / "probes.csv", index=False)
    entry = fault_entry(
        spec.fault,
        kind,
        {"at_s": at_s, **fault_config},
        restart,
        thread.record if thread else {},
        t0_wall,
        thread.error if thread else run_error,
    )
    requests = _read_requests(out)
    measured: dict[str, Any] = {}
    if entry["start_s"] is not None and requests is not None and len(requests):
        probes = pd.read_csv(out / "probes.csv") if (out / "probes.csv").is_file() else None
        measured = measure_fault(
            requests,
            start_s=entry["start_s"],
            end_s=entry["end_s"],
            planned=_planned(out),
            warmup_s=warmup_s,
            horizon_s=duration_s,
            window_s=float(rule["window_s"]),
            quiet_s=float(rule["quiet_s"]),
            band_tolerance=float(rule["band_tolerance"]),
            probes=probes,
        )
    entry.update(measured)
    problems = [p for p in dict.fromkeys((run_error, entry["error"])) if p]
    if measured and measured["requests_lost"]:
        problems.append(f"{measured['requests_lost']} requests lost by the client")
    k3s_facts = _k3s_facts(out) if spec.target == "k3s" else None
    result = {
        "faults": [entry],
        "target": spec.target,
        "variant": spec.variant,
        "bento_variant": variant["variant"],
        "restart": restart,
        "fault": spec.fault,
        "repetition": spec.repetition,
        "rate_rps": rate_rps,
        "t0_wall_s": t0_wall,
        "valid": not problems,
        "problems": problems,
    }
    if k3s_facts is not None:
        result["k3s"] = k3s_facts
    write_json(out / "faults.json", result)
    env = environment()
    meta = {
        "target": spec.target,
        "variant": spec.variant,
        "bento_variant": variant["variant"],
        "restart": restart,
        "fault": spec.fault,
        "fault_config": resilience["faults"][spec.fault],
        "scenario": resilience["scenario"],
        "scenario_config": scenario,
        "repetition": spec.repetition,
        "seed": seed,
        "rate_rps": rate_rps,
        "duration_s": duration_s,
        "variant_settings": record.get("settings"),
        "k3s_settings": (
            k3s_driver.k3s_settings(config, variant["variant"]) if spec.target == "k3s" else None
        ),
        "bento_tag": record.get("tag"),
        "config_hash": stable_hash(config),
        "cpus": config["cpus"],
        "git_commit": env["git_commit"],
        "packages": env["packages"],
        "cpu": env["cpu"],
        "python": env["python"],
        "wall_time_s": round(time.time() - started, 3),
        "summary_valid": bool(summary.get("valid")),
        "valid": not problems,
        "problems": problems,
    }
    write_json(out / "meta.json", meta)
    return result


# ---------------------------------------------------------------------------------- analysis

TABLE_COLUMNS = [
    "target",
    "variant",
    "bento_variant",
    "restart",
    "fault",
    "kind",
    "repetition",
    "rate_rps",
    "start_s",
    "end_s",
    "injected",
    "requests_planned",
    "requests_lost",
    "requests_not_ok",
    "not_ok_by_outcome",
    "time_to_first_error_s",
    "time_to_first_ok_s",
    "recovered",
    "time_to_recover_s",
    "pre_fault_band_p99_ms",
    "peak_latency_ms",
    "readyz_first_failure_s",
    "readyz_back_s",
    "readyz_failed_probes",
    "valid",
    "problems",
    "run_dir",
]


def resilience_table(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per resilience run (per fault of it) from its faults.json."""
    rows = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / "faults.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data.get("faults", []):
            row = {key: data.get(key) for key in ("target", "variant", "bento_variant")}
            row.update(
                restart=data.get("restart"),
                fault=data.get("fault"),
                repetition=data.get("repetition"),
                rate_rps=data.get("rate_rps"),
                valid=data.get("valid"),
                problems="; ".join(data.get("problems", [])),
                run_dir=str(run_dir),
            )
            for key in TABLE_COLUMNS:
                if key in entry and key not in ("fault",):
                    row[key] = entry[key]
            row["not_ok_by_outcome"] = ", ".join(
                f"{k}: {v}" for k, v in sorted((entry.get("not_ok_by_outcome") or {}).items())
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def resilience_outputs(
    config: dict[str, Any], table_path: str | Path, figures_dir: str | Path
) -> dict[str, Any]:
    """results/tables/resilience.csv and one timeline figure per fault (every variant's first
    repetition in it): resilience_<fault>.{png,pdf}."""
    from servebench.figures import resilience_timeline

    results_dir = Path(config["results_dir"])
    specs = resilience_matrix(config)
    table = resilience_table([spec.path(results_dir) for spec in specs])
    table_path = Path(table_path)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_path, index=False, float_format="%.6g")
    written = {}
    for fault in faults_for_target(config):
        dirs = [
            spec.path(results_dir) for spec in specs if spec.fault == fault and spec.repetition == 0
        ]
        written[fault] = [
            str(p) for p in resilience_timeline(dirs, Path(figures_dir) / f"resilience_{fault}")
        ]
    return {"table": str(table_path), "figures": written}


def resilience_figure_names(config: dict[str, Any]) -> list[str]:
    """Base names of the timeline figures (one per fault); none when resilience is off."""
    if not (config.get("resilience") or {}).get("enabled", False):
        return []
    return [f"resilience_{fault}" for fault in faults_for_target(config)]
