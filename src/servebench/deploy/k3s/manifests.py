"""The K3s target's manifests: the kustomize overlay of a variant over k3s/base (image, replicas,
HPA, PDB, resources, probes, volume limits, security settings), rendered offline and validated
strictly.

Images are tagged with their Bento's version, a hash of the Bento's content, never `latest`:
what runs in the cluster is known from its tag, and a new build is a new tag (no stale image
in a node's cache). A run's overlay takes the tag of the Bento it deploys; the committed
overlays (k3s/overlays/, `servebench k3s-render`) take the tags of the Bento records in
results/bentos/ when they are rendered (`committed_image_tags`).
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from servebench.deploy.k3s import kustomize
from servebench.provenance import REPO_ROOT
from servebench.settings import K3sTarget

K3S_DIR = REPO_ROOT / "k3s"


BASE_DIR = K3S_DIR / "base"


OVERLAYS_DIR = K3S_DIR / "overlays"


APP_NAME = "sentiment"


SELECTOR = f"app.kubernetes.io/name={APP_NAME}"


BASE_IMAGE = "servebench-sentiment"


CONTAINER_PORT = 3000


class OverlayError(ValueError):
    """An overlay cannot be written as asked (a variant without a built Bento record)."""


STARTUP_PERIOD_S = 5


def image_name(settings: K3sTarget, bento_tag: str) -> tuple[str, str]:
    """(image name, tag) of a Bento: [<registry>/]<repository>/<Bento name>, <Bento version>."""
    name, _, version = bento_tag.partition(":")
    if not version:
        raise OverlayError(f"Bento tag {bento_tag!r} has no version: the image needs its hash")
    parts = [settings.image_registry, settings.image_repository, name]
    return "/".join(part.strip("/") for part in parts if part), version


def _volume_indexes() -> dict[str, int]:
    """Index of each emptyDir volume of k3s/base/deployment.yaml, by its name (the keys of
    deploy.k3s.volume_size_limits)."""
    deployment = yaml.safe_load((BASE_DIR / "deployment.yaml").read_text(encoding="utf-8"))
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    return {volume["name"]: index for index, volume in enumerate(volumes) if "emptyDir" in volume}


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
    settings: K3sTarget,
    variant: str,
    image: tuple[str, str],
    *,
    ready_timeout_s: float,
    base: str = "../../base",
    extra_resources: Sequence[str] = (),
) -> dict[str, Any]:
    """The kustomization of one variant's overlay (JSON 6902 patches over k3s/base)."""
    container = "/spec/template/spec/containers/0"
    resources = settings.resources
    startup_failures = max(1, int(-(-float(ready_timeout_s) // STARTUP_PERIOD_S)))
    pull_policy = "Never" if settings.image_transfer == "import" else "IfNotPresent"
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
            bool(settings.read_only_root_filesystem),
        ),
    ]
    replicas = int(settings.replicas)
    hpa_ops = [
        _op("replace", "/spec/minReplicas", replicas),
        _op("replace", "/spec/maxReplicas", max(replicas, int(settings.max_replicas))),
        _op(
            "replace",
            "/spec/metrics/0/resource/target/averageUtilization",
            int(settings.hpa_cpu_utilization_percent),
        ),
    ]
    # Without pdb_min_available the base's maxUnavailable 1 stays (a drain goes on, one pod at
    # a time); with it, minAvailable replaces it.
    pdb_ops = (
        []
        if settings.pdb_min_available is None
        else [
            _op("remove", "/spec/maxUnavailable"),
            _op("add", "/spec/minAvailable", int(settings.pdb_min_available)),
        ]
    )
    volumes = "/spec/template/spec/volumes"
    deployment_ops += [
        _op("replace", f"{volumes}/{index}/emptyDir/sizeLimit", settings.volume_size_limits[name])
        for name, index in _volume_indexes().items()
    ]
    patches = [
        _patch("Deployment", deployment_ops),
        _patch("HorizontalPodAutoscaler", hpa_ops),
    ]
    if pdb_ops:
        patches.append(_patch("PodDisruptionBudget", pdb_ops))
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base, *extra_resources],
        "namespace": settings.namespace,
        "images": [{"name": BASE_IMAGE, "newName": image[0], "newTag": image[1]}],
        "replicas": [{"name": APP_NAME, "count": replicas}],
        "patches": patches,
    }


def node_port_service(settings: K3sTarget) -> dict[str, Any]:
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
                    "nodePort": int(settings.node_port),
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
    "# Regenerate with `servebench k3s-render` (the image tag: the version of the Bento in\n"
    "# results/bentos/<variant>.json); a run writes its own copy, with the image of the Bento\n"
    "# it deploys, into its folder (k3s/overlay/).\n"
)


def write_overlay(
    directory: str | Path,
    settings: K3sTarget,
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
    if settings.access == "node-port":
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


def committed_image_tags(bentos_dir: str | Path, variants: Sequence[str]) -> dict[str, str]:
    """The Bento tag of each variant from its record (<bentos_dir>/<variant>.json, written by
    the workflow's Bento rule): the committed overlays carry the content hash of the Bento
    they were rendered from. OverlayError naming the variants without a record."""
    import json

    tags, missing = {}, []
    for variant in variants:
        path = Path(bentos_dir) / f"{variant}.json"
        try:
            tags[variant] = str(json.loads(path.read_text(encoding="utf-8"))["tag"])
        except (OSError, ValueError, KeyError):
            missing.append(variant)
    if missing:
        raise OverlayError(
            f"no Bento record for {', '.join(map(repr, missing))} in {bentos_dir}: an overlay's "
            "image is tagged with its Bento's version (a content hash, never latest); build "
            "the Bentos first (snakemake "
            + " ".join(f"{Path(bentos_dir) / name}.json" for name in missing)
            + ")"
        )
    return tags


def write_committed_overlays(
    targets: dict[str, K3sTarget], bento_tags: dict[str, str], root: str | Path = OVERLAYS_DIR
) -> list[Path]:
    """k3s/overlays/<variant>/ of each variant (its target settings: its own replicas and PDB
    over deploy.k3s), with the image of its Bento (`bento_tags`: committed_image_tags)."""
    written = []
    for variant, settings in targets.items():
        image = image_name(settings, bento_tags[variant])
        directory = Path(root) / variant
        # the overlay refers to k3s/base by a relative path, from wherever it is written
        base = os.path.relpath(BASE_DIR.resolve(), directory.resolve())
        written.append(
            write_overlay(
                directory,
                settings,
                variant,
                image,
                ready_timeout_s=settings.ready_timeout_s,
                base=base,
            )
        )
    return written


def stage_run_manifests(
    out_dir: str | Path,
    settings: K3sTarget,
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
