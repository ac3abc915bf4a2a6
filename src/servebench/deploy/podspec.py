"""The K3s pod spec as a container's settings: what a container needs to run as the Deployment's
pod does (user, read-only root filesystem, capabilities, privilege escalation, the emptyDir
paths, CPU and memory limits, environment, port, probes), read from a Deployment document
(k3s/base/deployment.yaml or a variant's rendered overlay). The docker target's `docker run`
flags (servebench.deploy.docker) and the image's writable folders (servebench.deploy.images)
come from here, so the pod spec is their one source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from servebench.deploy.k3s.manifests import BASE_DIR
from servebench.errors import UserError


class PodSpecError(UserError):
    """A pod spec (or a quantity in it) the docker target cannot run as a container."""


DEPLOYMENT_MANIFEST = BASE_DIR / "deployment.yaml"
_MEMORY_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity ("1536Mi", "3Gi", "512M", 1000000) in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kMGT]i?)?\s*", str(quantity))
    if match is None:
        raise PodSpecError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("1", "500m", 1.5) in cores."""
    text = str(quantity).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError as error:
        raise PodSpecError(f"not a CPU quantity: {quantity!r}") from error


def _probe(probe: dict[str, Any] | None, ports: dict[str, int]) -> dict[str, Any] | None:
    if not probe:
        return None
    http = probe.get("httpGet") or {}
    port = http.get("port")
    return {
        "path": http.get("path", "/"),
        "port": ports.get(port, port) if isinstance(port, str) else port,
        "initial_delay_s": probe.get("initialDelaySeconds", 0),
        "period_s": probe.get("periodSeconds", 10),
        "timeout_s": probe.get("timeoutSeconds", 1),
        "failure_threshold": probe.get("failureThreshold", 3),
    }


def container_settings(deployment: dict[str, Any]) -> dict[str, Any]:
    """What a container needs to run as the Deployment's pod does: user, read-only root, dropped
    capabilities, privilege escalation, writable paths (the emptyDir mounts), limits, env,
    port and probes. `deployment` is a Deployment document (k3s/base/deployment.yaml, or the
    rendered overlay's), so the pod spec is the one source of these settings."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    empty_dirs = {v["name"]: v["emptyDir"] or {} for v in pod.get("volumes", []) if "emptyDir" in v}
    other_volumes = [v["name"] for v in pod.get("volumes", []) if "emptyDir" not in v]
    if other_volumes:
        raise PodSpecError(f"pod volumes other than emptyDir are not supported: {other_volumes}")
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container["ports"]}
    limits = (container.get("resources") or {}).get("limits") or {}
    uid = security.get("runAsUser", pod_security.get("runAsUser"))
    gid = security.get("runAsGroup", pod_security.get("runAsGroup", uid))
    return {
        "user": None if uid is None else f"{uid}:{gid}",
        "read_only_root_filesystem": bool(security.get("readOnlyRootFilesystem", False)),
        "cap_drop": list((security.get("capabilities") or {}).get("drop") or []),
        "cap_add": list((security.get("capabilities") or {}).get("add") or []),
        "no_new_privileges": security.get("allowPrivilegeEscalation") is False,
        "privileged": bool(security.get("privileged", False)),
        "writable_paths": sorted(
            m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty_dirs
        ),
        # An emptyDir's sizeLimit (the kubelet evicts a pod that writes past it).
        "writable_bytes": {
            m["mountPath"]: memory_bytes(empty_dirs[m["name"]]["sizeLimit"])
            for m in container.get("volumeMounts", [])
            if "sizeLimit" in empty_dirs.get(m["name"], {})
        },
        "cpus": cpu_cores(limits["cpu"]) if "cpu" in limits else None,
        "memory_bytes": memory_bytes(limits["memory"]) if "memory" in limits else None,
        "env": {e["name"]: str(e.get("value", "")) for e in container.get("env", [])},
        "port": container["ports"][0]["containerPort"],
        "probes": {
            kind: _probe(container.get(f"{kind}Probe"), ports)
            for kind in ("startup", "readiness", "liveness")
        },
    }


def load_deployment(path: str | Path = DEPLOYMENT_MANIFEST) -> dict[str, Any]:
    """The Deployment document of a manifest file (the first of kind Deployment)."""
    import yaml

    for document in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")):
        if isinstance(document, dict) and document.get("kind") == "Deployment":
            return document
    raise PodSpecError(f"{path}: no Deployment in it")
