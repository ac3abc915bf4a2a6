"""A small offline renderer of the kustomize subset that servebench's k3s/ tree uses.

`kubectl kustomize` is the reference; this renderer exists so that tests and the driver can
render and validate the manifests without a kubectl binary. It supports exactly what the
base and the generated overlays use, and refuses anything else (so it never renders a
different result silently):

- `resources`: files, or directories holding a kustomization.yaml (rendered recursively);
- `namespace`: set on every namespaced resource;
- `images`: `name` -> `newName` / `newTag` in the containers of workload templates;
- `replicas`: `name` + `count` of a Deployment;
- `patches`: JSON 6902 patches (`op` add / replace / remove) with a `target` of kind + name,
  inline (`patch:`) or from a file (`path:`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is broken."""


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _load_documents(path: Path) -> list[dict[str, Any]]:
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as error:
        raise KustomizeError(f"{path}: {error}") from None
    return [document for document in documents if document]


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The resources a kustomization directory renders to, in order."""
    directory = Path(directory)
    kustomization_path = _kustomization_file(directory)
    kustomization = yaml.safe_load(kustomization_path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(kustomization) - SUPPORTED_FIELDS)
    if unknown:
        raise KustomizeError(
            f"{kustomization_path}: unsupported field(s) {', '.join(unknown)} "
            f"(supported: {', '.join(sorted(SUPPORTED_FIELDS))})"
        )
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources.extend(render(path))
        elif path.is_file():
            resources.extend(_load_documents(path))
        else:
            raise KustomizeError(f"{kustomization_path}: resource {entry!r} does not exist")
    resources = copy.deepcopy(resources)
    for patch in kustomization.get("patches", []):
        _apply_patch_entry(resources, patch, directory, kustomization_path)
    for replica in kustomization.get("replicas", []):
        _set_replicas(resources, replica, kustomization_path)
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource.get("kind") not in CLUSTER_SCOPED_KINDS:
                resource.setdefault("metadata", {})["namespace"] = namespace
    return resources


def render_yaml(directory: str | Path) -> str:
    """The rendered resources as one multi-document YAML text."""
    return yaml.safe_dump_all(render(directory), sort_keys=False)


def _matches(resource: dict[str, Any], target: dict[str, Any]) -> bool:
    metadata = resource.get("metadata", {})
    return all(
        [
            target.get("kind") in (None, resource.get("kind")),
            target.get("name") in (None, metadata.get("name")),
        ]
    )


def _apply_patch_entry(
    resources: list[dict[str, Any]], entry: dict[str, Any], directory: Path, where: Path
) -> None:
    target = entry.get("target")
    if not target:
        raise KustomizeError(f"{where}: only JSON 6902 patches with a target are supported")
    if "patch" in entry:
        operations = yaml.safe_load(entry["patch"])
    elif "path" in entry:
        operations = yaml.safe_load((directory / entry["path"]).read_text(encoding="utf-8"))
    else:
        raise KustomizeError(f"{where}: a patch needs `patch` or `path`")
    if not isinstance(operations, list):
        raise KustomizeError(f"{where}: only JSON 6902 patches (a list of operations)")
    matched = [resource for resource in resources if _matches(resource, target)]
    if not matched:
        raise KustomizeError(f"{where}: patch target {target} matches no resource")
    for resource in matched:
        for operation in operations:
            apply_json_patch_operation(resource, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def apply_json_patch_operation(document: Any, operation: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove) on `document`, in place."""
    op = operation.get("op")
    parts = _pointer(operation.get("path", ""))
    if op not in ("add", "replace", "remove"):
        raise KustomizeError(f"unsupported JSON patch op {op!r}")
    parent = document
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError):
            raise KustomizeError(f"JSON patch path {operation['path']!r} does not exist") from None
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        else:
            del parent[index]
        return
    if op in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"JSON patch path {operation['path']!r} does not exist")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation["value"])


def _set_replicas(resources: list[dict[str, Any]], entry: dict[str, Any], where: Path) -> None:
    found = False
    for resource in resources:
        if (
            resource.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet")
            and resource.get("metadata", {}).get("name") == entry["name"]
        ):
            resource["spec"]["replicas"] = int(entry["count"])
            found = True
    if not found:
        raise KustomizeError(f"{where}: replicas for {entry['name']!r}: no such workload")


def _set_image(resources: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    for resource in resources:
        pod = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            image = container.get("image", "")
            name, _, tag = image.partition(":") if "@" not in image else (image, "", "")
            if name != entry["name"]:
                continue
            new_name = entry.get("newName", name)
            new_tag = entry.get("newTag", tag)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
