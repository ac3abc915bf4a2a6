"""Fault injection: the injector of each fault kind, and the context an injector works on.

The kinds and the target each acts on are servebench.fault_kinds (the configuration's
vocabulary); each target's module registers its injectors here: `faults.local` (kill-worker,
kill-server, stall), `faults.k3s` (delete-pod, rollout-restart, kill-containerd,
restart-k3s) and `faults.docker` (kill-pid1, docker-kill, docker-restart, docker-pause).
`injector(kind, target)` returns the one to run, or raises FaultError saying why it cannot run
there.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servebench.fault_kinds import FAULT_KINDS, wrong_target_message

# The module that registers each target's injectors (imported on first use).
TARGET_MODULES = {
    "local": "servebench.faults.local",
    "k3s": "servebench.faults.k3s",
    "docker": "servebench.faults.docker",
}


class FaultError(RuntimeError):
    """A fault could not be injected (no worker to kill, unknown fault, another target ...)."""


@dataclass
class FaultContext:
    """What an injector works on: the run's deployment (servebench.deploy: `.current` is the
    local server, `.server` the K3s one or the container; a local deployment restarts on the
    same port), the fault's parameters, the variant's restart policy, and the run's stop
    event."""

    target: str
    params: dict[str, Any]
    deployment: Any = None
    restart: str = "none"
    stop: threading.Event = field(default_factory=threading.Event)


# An injector returns facts about the injection (pids, end time as wall clock 'end_wall_s').
Injector = Callable[[FaultContext], dict[str, Any]]

INJECTORS: dict[str, Injector] = {}


def register_injector(kind: str, inject: Injector) -> Injector:
    """The injector of a fault kind of servebench.fault_kinds."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"{kind!r} is not a fault kind of servebench.fault_kinds")
    INJECTORS[kind] = inject
    return inject


def injector(kind: str, target: str) -> Injector:
    """The injector of `kind` on `target`; FaultError when unknown or for another target."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(FAULT_KINDS))})")
    if target not in FAULT_KINDS[kind].targets:
        raise FaultError(wrong_target_message(kind, target))
    importlib.import_module(TARGET_MODULES[target])
    if kind not in INJECTORS:
        raise FaultError(f"fault {kind!r} has no injector on the {target} target")
    return INJECTORS[kind]
