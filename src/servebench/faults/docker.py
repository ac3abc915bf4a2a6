"""The docker target's faults, on the run's container (servebench.deploy.docker): SIGKILL its
main process from the host, `docker kill`, `docker restart`, `docker pause` for a while.

What follows a kill is the container's restart policy (the resilience variant's `restart`:
none -> Docker's `no`, the container stays down; supervisor -> `on-failure`), measured as the
local faults are (servebench.faults.measure)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from servebench.deploy.docker import DockerRunError, DockerServer, docker
from servebench.faults import FaultContext, FaultError, register_injector

# Longest wait for `docker restart` (its own stop timeout is 10 s, then the start).
RESTART_TIMEOUT_S = 120.0


def _server(context: FaultContext) -> DockerServer:
    return context.deployment.server


def _docker(context: FaultContext, *args: str) -> dict[str, Any]:
    """Run a docker command on the container; its facts for faults.json."""
    server = _server(context)
    try:
        result = docker(*args, server.container_id, timeout_s=RESTART_TIMEOUT_S)
    except DockerRunError as error:
        raise FaultError(str(error)) from None
    return {"command": ["docker", *args, server.container_id], "returncode": result.returncode}


def inject_kill_pid1(context: FaultContext) -> dict[str, Any]:
    """SIGKILL the container's main process (PID 1 inside it) from the host: the kernel then
    kills every process of the container."""
    pid = _server(context).main_pid()
    if not pid:
        raise FaultError("the container has no running main process to kill")
    os.kill(pid, signal.SIGKILL)
    return {"killed_pid": pid}


def inject_docker_kill(context: FaultContext) -> dict[str, Any]:
    return {"pid": _server(context).main_pid(), **_docker(context, "kill")}


def inject_docker_restart(context: FaultContext) -> dict[str, Any]:
    """`docker restart`: SIGTERM, up to 10 s to stop, then a new start on the same port."""
    server = _server(context)
    before = server.main_pid()
    facts = _docker(context, "restart")
    facts["end_wall_s"] = time.time()  # the container runs again (ready or not)
    facts.update(pid=before, restarted_pid=server.main_pid())
    return facts


def inject_docker_pause(context: FaultContext) -> dict[str, Any]:
    """`docker pause` for `duration_s`, then `docker unpause` (always, also when interrupted)."""
    duration_s = float(context.params.get("duration_s", 5.0))
    facts = _docker(context, "pause")
    try:
        context.stop.wait(duration_s)
    finally:
        _docker(context, "unpause")
    facts["end_wall_s"] = time.time()
    return facts


for _kind, _inject in (
    ("kill-pid1", inject_kill_pid1),
    ("docker-kill", inject_docker_kill),
    ("docker-restart", inject_docker_restart),
    ("docker-pause", inject_docker_pause),
):
    register_injector(_kind, _inject)
