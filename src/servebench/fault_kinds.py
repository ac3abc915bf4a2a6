"""The fault kinds of each deployment target: the vocabulary of `resilience.faults.<name>.kind`.

What a kind does is its injector's business (servebench.faults); which target it acts on is
known here, at the bottom, so that the configuration rules and the run matrix can skip the
faults of another target without importing any driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGETS = ("local", "k3s", "docker", "external")
# The resilience run of a target without fault kinds (external: servebench owns neither the
# server's processes nor its platform): the load test and the health probes, no fault.
PROBES_ONLY = "probes-only"


@dataclass(frozen=True)
class FaultKind:
    name: str
    targets: tuple[str, ...]
    description: str


FAULT_KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind(
            "kill-worker",
            ("local",),
            "SIGKILL one BentoML worker process; BentoML's supervisor respawns it",
        ),
        FaultKind(
            "kill-server",
            ("local",),
            "SIGKILL every process of the server; restart none: stays down, supervisor: the "
            "driver restarts it on the same port",
        ),
        FaultKind("stall", ("local",), "SIGSTOP one worker for duration_s, then SIGCONT"),
        FaultKind("delete-pod", ("k3s",), "kubectl delete pod (the first pod of the deployment)"),
        FaultKind(
            "rollout-restart",
            ("k3s",),
            "kubectl rollout restart deployment/sentiment",
        ),
        FaultKind(
            "kill-containerd",
            ("k3s",),
            "SIGKILL K3s's containerd (deploy.k3s.faults.kill_containerd)",
        ),
        FaultKind(
            "restart-k3s",
            ("k3s",),
            "restart the K3s service (deploy.k3s.faults.restart_k3s)",
        ),
        FaultKind(
            "kill-pid1",
            ("docker",),
            "SIGKILL the container's main process from the host (its PID from `docker inspect`); "
            "restart none: the container stays down, supervisor: Docker's on-failure policy "
            "restarts it",
        ),
        FaultKind("docker-kill", ("docker",), "`docker kill` (SIGKILL through the daemon)"),
        FaultKind("docker-restart", ("docker",), "`docker restart` (SIGTERM, then a new start)"),
        FaultKind(
            "docker-pause",
            ("docker",),
            "`docker pause` (the cgroup freezer) for duration_s, then `docker unpause`",
        ),
    )
}

# What a target's faults act on (the reason a fault of one target cannot run on another).
TARGET_FAULTS_ACT_ON = {
    "local": "the processes of a `bentoml serve` on this machine",
    "k3s": "a K3s cluster (its pods, its deployment or its node's services)",
    "docker": "a Docker container on this machine (its main process, or the container through "
    "the daemon)",
}


def faults_of(target: str) -> list[str]:
    """The fault kinds of `target`."""
    return [name for name, kind in FAULT_KINDS.items() if target in kind.targets]


def wrong_target_message(name: str, target: str) -> str:
    """Why fault kind `name` does not run on `target`, and what does."""
    kind = FAULT_KINDS[name]
    acts_on = " or ".join(TARGET_FAULTS_ACT_ON.get(t, f"the {t} target") for t in kind.targets)
    return (
        f"fault {name!r} applies to the {'/'.join(kind.targets)} target only (it acts on "
        f"{acts_on}), not to deploy.target {target!r}; the faults of {target!r}: "
        f"{', '.join(faults_of(target)) or 'none'}"
    )


def faults_for_target(config: dict[str, Any]) -> list[str]:
    """The configured faults (names) whose kind applies to deploy.target: a profile for another
    target inherits config.yaml's faults by the merge, so the others are skipped, not errors."""
    target = config["deploy"]["target"]
    names = []
    for name, fault in config["resilience"]["faults"].items():
        kind = FAULT_KINDS.get(fault.get("kind", name))
        if kind is None or target in kind.targets:
            names.append(name)
    return names


def resilience_faults(config: dict[str, Any]) -> list[str]:
    """The `<fault>` names of the resilience runs: the configured faults of deploy.target, or
    PROBES_ONLY on a target that has no fault kind (the configured faults are skipped, each
    with its reason in the run's faults.json)."""
    if not faults_of(config["deploy"]["target"]):
        return [PROBES_ONLY]
    return faults_for_target(config)
