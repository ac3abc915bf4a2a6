"""Provenance: what every result file records about where and how it was made."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# Packages whose versions decide the numbers; recorded in every meta.json.
KEY_PACKAGES = (
    "servebench",
    "torch",
    "transformers",
    "tokenizers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "bentoml",
    "locust",
    "snakemake",
    "numpy",
    "scipy",
    "pandas",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_info() -> dict[str, Any]:
    """CPU model, core count and the instruction-set flags that matter for inference speed."""
    model_name = platform.processor() or platform.machine()
    flags: list[str] = []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model_name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.split()
    interesting = (
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_int8",
        "fma",
        "neon",
        "asimd",
    )
    return {
        "model": model_name,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "isa_flags": [flag for flag in interesting if flag in flags],
    }


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """The checked-out commit, with '-dirty' when tracked files changed; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-serializable value, independent of key order."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def environment() -> dict[str, Any]:
    """Machine and software description, shared by every run's meta.json."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "memory_bytes": _memory_bytes(),
        "git_commit": git_commit(),
        "packages": package_versions(),
    }


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def write_json(path: str | Path, value: Any) -> None:
    """Write JSON atomically: a crash never leaves a half-written file that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    temporary.replace(path)


def source_hash(*module_names: str) -> str:
    """sha256 of the source of servebench modules or packages (e.g. "analysis", "layout"): a
    param of the analysis rules, so that editing the library reruns the analysis (and only the
    analysis; Snakemake's own code trigger sees only the rules' scripts)."""
    digest = hashlib.sha256()
    package_dir = Path(__file__).resolve().parent
    for name in module_names:
        path = package_dir.joinpath(*name.split("."))
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            digest.update(file.relative_to(package_dir).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()
