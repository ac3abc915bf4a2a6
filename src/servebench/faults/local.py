"""The local target's faults: SIGKILL a BentoML worker, SIGKILL the whole server (restart none
or by the driver), SIGSTOP a worker for a while."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import psutil

from servebench.deploy.local import (
    LocalServer,
)
from servebench.faults import FaultContext, FaultError, register_injector


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
    server = context.deployment.current
    workers = worker_processes(server)
    if not workers:
        raise FaultError(f"no BentoML worker process found under pid {server.pid}")
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
    server = context.deployment.current
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
    if context.restart == "supervisor":
        delay_s = float(context.params.get("restart_delay_s", 0.0))
        if context.stop.wait(delay_s):
            return facts
        facts["restart_started_wall_s"] = time.time()
        new_server = context.deployment.restart()
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


for _kind, _inject in (
    ("kill-worker", inject_kill_worker),
    ("kill-server", inject_kill_server),
    ("stall", inject_stall),
):
    register_injector(_kind, _inject)
