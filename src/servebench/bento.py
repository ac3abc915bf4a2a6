"""Build one Bento per service variant, offline and reproducibly.

For a variant named in the config:
1. the prepared runtime directory (results/model/<model>/<runtime>/) is registered in the
   BentoML model store of `deploy.bentoml_home`, with its provenance as metadata, under a tag
   whose version is the hash of the directory's content (registering twice is a no-op);
2. a build context is staged: the service (services/sentiment/), a copy of
   `servebench/runtime.py`, the variant spec as `variant.json`, the runtime's requirements
   (envs/bento-<runtime>.txt) and the bentofile filled in from its template;
3. `bentoml build` runs there, with a version that hashes all of the above, so the same inputs
   give the same tag (an existing Bento with that tag is reused);
4. results/bentos/<variant>.json records the tag, the settings and the Bento's size.

BentoML is only ever run in subprocesses with BENTOML_HOME set, so this module never imports
it and works in any process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from servebench.provenance import REPO_ROOT, environment, write_json

SERVICE_DIR = REPO_ROOT / "services" / "sentiment"
SERVICE_FILES = ("service.py", "sentiment_inference.py")
BENTOFILE_TEMPLATE = SERVICE_DIR / "bentofile.template.yaml"
RUNTIME_MODULE = Path(__file__).resolve().parent / "model" / "runtime.py"
ENVS_DIR = REPO_ROOT / "envs"
# Keys of a variant that go into its Bento (everything that changes the served system).
VARIANT_KEYS = (
    "runtime",
    "batching",
    "sub_batch_size",
    "workers",
    "threads_per_worker",
    "gc_freeze",
    "request_telemetry",
    "max_concurrency",
    "timeout_s",
)


class BentoBuildError(RuntimeError):
    """A Bento could not be built; the message carries the tail of BentoML's output."""


def bentoml_env(bentoml_home: str | Path) -> dict[str, str]:
    """The environment for a BentoML subprocess: its own home, no telemetry."""
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(Path(bentoml_home).resolve())
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def bentoml_exe() -> str:
    """The `bentoml` command of the running Python environment."""
    candidate = Path(sys.executable).parent / "bentoml"
    return str(candidate) if candidate.exists() else "bentoml"


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """What of a variant goes into its Bento (a checked config: the schema's defaults are in)."""
    variants = config["variants"]
    if variant not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise KeyError(f"no variant named {variant!r} in the config (known: {known})")
    return {key: variants[variant][key] for key in VARIANT_KEYS}


def service_limits(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config["service"])


def _sanitize_tag_part(text: str) -> str:
    """A BentoML tag name: lowercase letters, digits, '-', '_', '.'; starting alphanumeric."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-_.")
    return cleaned[:60] or "model"


def hash_paths(paths: list[Path], extra: Any = None) -> str:
    """sha256 of files' relative names and bytes (directories walked in sorted order)."""
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            name = path.relative_to(root).as_posix() if root.is_dir() else path.name
            digest.update(name.encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def model_tag(runtime_dir: str | Path) -> str:
    """`<model>-<runtime>:<content hash>` of a prepared runtime directory."""
    runtime_dir = Path(runtime_dir)
    provenance = json.loads((runtime_dir / "provenance.json").read_text(encoding="utf-8"))
    model_name = runtime_dir.resolve().parent.name
    name = _sanitize_tag_part(f"{model_name}-{provenance['runtime']}")
    return f"{name}:{hash_paths([runtime_dir])[:16]}"


def _metadata(value: Any) -> Any:
    """BentoML metadata takes no None: keep the structure, write None as the string 'null'."""
    if isinstance(value, dict):
        return {str(key): _metadata(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_metadata(item) for item in value]
    return "null" if value is None else value


_REGISTER_SCRIPT = r"""
import json, shutil, sys
import bentoml
from bentoml.exceptions import NotFound
runtime_dir, tag, metadata_path = sys.argv[1:4]
try:
    bentoml.models.get(tag)
    print("registered already:", tag)
except NotFound:
    metadata = json.loads(open(metadata_path, encoding="utf-8").read())
    labels = {"runtime": metadata.get("runtime", ""), "source": "servebench"}
    with bentoml.models.create(tag, metadata=metadata, labels=labels) as model:
        shutil.copytree(runtime_dir, model.path, dirs_exist_ok=True)
    print("registered:", tag)
"""


def _run(command: list[str], env: dict[str, str], log: Path | None, what: str) -> str:
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    output = result.stdout + result.stderr
    if log is not None:
        with log.open("a", encoding="utf-8") as handle:
            shown = ["<script>" if "\n" in part else part for part in command]
            handle.write(f"# {what}\n$ {' '.join(shown)}\n{output}\n")
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise BentoBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return output


def register_model(
    runtime_dir: str | Path, bentoml_home: str | Path, log: Path | None = None
) -> str:
    """Put a prepared runtime directory into the model store (idempotent); return its tag."""
    runtime_dir = Path(runtime_dir).resolve()
    tag = model_tag(runtime_dir)
    provenance = json.loads((runtime_dir / "provenance.json").read_text(encoding="utf-8"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(_metadata(provenance), handle)
        metadata_path = handle.name
    try:
        _run(
            [sys.executable, "-c", _REGISTER_SCRIPT, str(runtime_dir), tag, metadata_path],
            bentoml_env(bentoml_home),
            log,
            f"registering {runtime_dir} in the model store",
        )
    finally:
        os.unlink(metadata_path)
    return tag


def variant_spec(
    config: dict[str, Any],
    variant: str,
    tag_of_model: str,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The spec written into the Bento as variant.json and read by the service at import;
    `settings` (VARIANT_KEYS) instead of the variant's in the config (the tuning stage's)."""
    settings = settings or variant_settings(config, variant)
    return {
        "variant": variant,
        **settings,
        "limits": service_limits(config),
        "model_tag": tag_of_model,
    }


def requirements_file(runtime: str) -> Path:
    path = ENVS_DIR / f"bento-{runtime}.txt"
    if not path.is_file():
        raise BentoBuildError(f"{path}: no Bento requirements for runtime {runtime!r}")
    return path


def stage_build_context(spec: dict[str, Any], build_dir: str | Path) -> Path:
    """Write the build context of one variant's Bento into `build_dir` (emptied first)."""
    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    for name in SERVICE_FILES:
        shutil.copy2(SERVICE_DIR / name, build_dir / name)
    shutil.copy2(RUNTIME_MODULE, build_dir / "servebench_runtime.py")
    shutil.copy2(requirements_file(spec["runtime"]), build_dir / "requirements.txt")
    (build_dir / "variant.json").write_text(
        json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    bentofile = yaml.safe_load(BENTOFILE_TEMPLATE.read_text(encoding="utf-8"))
    bentofile["name"] = bento_name(spec["variant"])
    bentofile["labels"] = {
        "variant": spec["variant"],
        "runtime": spec["runtime"],
        "model": spec["model_tag"].replace(":", "-"),
    }
    (build_dir / "bentofile.yaml").write_text(
        yaml.safe_dump(bentofile, sort_keys=False), encoding="utf-8"
    )
    return build_dir


def bento_name(variant: str) -> str:
    return _sanitize_tag_part(f"sentiment-{variant}")


@contextlib.contextmanager
def _store_lock(bentoml_home: Path) -> Iterator[None]:
    """Builds of several variants may run at once; the store is written by one at a time."""
    bentoml_home.mkdir(parents=True, exist_ok=True)
    with (bentoml_home / ".servebench-build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bento_path(bentoml_home: str | Path, tag: str) -> Path:
    name, version = tag.split(":")
    return Path(bentoml_home) / "bentos" / name / version


def model_path(bentoml_home: str | Path, tag: str) -> Path:
    name, version = tag.split(":")
    return Path(bentoml_home) / "models" / name / version


def directory_size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build_bento(
    config: dict[str, Any],
    variant: str,
    runtime_dir: str | Path,
    output_json: str | Path,
    *,
    bentoml_home: str | Path | None = None,
    build_root: str | Path | None = None,
    log: str | Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the Bento of `variant` and write its record to `output_json`;
    `settings` (VARIANT_KEYS) instead of the variant's in the config (tuned ones)."""
    runtime_dir = Path(runtime_dir)
    home = Path(bentoml_home or config["deploy"]["bentoml_home"])
    home = home.resolve()
    log_path = Path(log) if log else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    settings = settings or variant_settings(config, variant)
    provenance = json.loads((runtime_dir / "provenance.json").read_text(encoding="utf-8"))
    if provenance.get("runtime") != settings["runtime"]:
        raise BentoBuildError(
            f"variant {variant!r} needs runtime {settings['runtime']!r}, but {runtime_dir} "
            f"holds {provenance.get('runtime')!r}"
        )
    build_dir = Path(build_root or home / "build") / variant
    env = bentoml_env(home)
    with _store_lock(home):
        tag_of_model = register_model(runtime_dir, home, log_path)
        spec = variant_spec(config, variant, tag_of_model, settings)
        stage_build_context(spec, build_dir)
        version = hash_paths([build_dir])[:16]
        tag = f"{bento_name(variant)}:{version}"
        reused = bento_path(home, tag).is_dir()
        if not reused:
            _run(
                [
                    bentoml_exe(),
                    "build",
                    str(build_dir),
                    "--bentofile",
                    str(build_dir / "bentofile.yaml"),
                    "--version",
                    version,
                ],
                env,
                log_path,
                f"bentoml build of variant {variant!r}",
            )
        path = bento_path(home, tag)
        if not path.is_dir():
            raise BentoBuildError(f"bentoml build reported success but {path} does not exist")
    bento_bytes = directory_size_bytes(path)
    model_bytes = directory_size_bytes(model_path(home, tag_of_model))
    env_info = environment()
    record = {
        "variant": variant,
        "tag": tag,
        "bentoml_home": str(home),
        "bento_path": str(path),
        # BentoML 1.4 keeps the model in the store and references it from the Bento; an
        # exported Bento or an image carries both.
        "bento_size_bytes": bento_bytes,
        "model_size_bytes": model_bytes,
        "bento_with_model_size_bytes": bento_bytes + model_bytes,
        "model_tag": tag_of_model,
        "runtime_dir": str(runtime_dir),
        "model_provenance": provenance,
        "settings": spec,
        "requirements": requirements_file(settings["runtime"]).name,
        "reused_existing_bento": reused,
        "environment": {key: env_info[key] for key in ("git_commit", "packages", "python")},
    }
    write_json(output_json, record)
    return record
