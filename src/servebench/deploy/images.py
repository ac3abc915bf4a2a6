"""Container images of the Bentos, built offline: a Debian base, a wheelhouse, one image per Bento.

    ensure_dockerd()                      # containers/dockerd.sh: install/start dockerd if needed
    base = build_base_image(results_dir)  # debootstrap bookworm minbase + python3 -> docker load
    wheels = build_wheelhouse(results_dir, runtimes)   # pip wheel from envs/ into one folder
    image = build_bento_image(bento_record, base, wheels, results_dir)

1. The base image is a Debian 12 root filesystem made by `debootstrap --variant=minbase
   --include=python3,python3-venv,python3-pip bookworm` (Debian's packages through apt's mirror;
   no image registry), trimmed of documentation and apt's indexes, written as a normalised tar
   (sorted names, file times clamped to the suite's Release date, numeric owners) and loaded
   as a one-layer image whose config (and so image id) depends only on that tar: the same
   packages give the same `servebench-base:<tar digest>` and image id.
2. The wheelhouse holds the wheels of every Bento runtime's requirements (envs/bento-<runtime>.txt
   plus the bentoml that serves it), resolved with envs/requirements.lock as constraints, so the
   image's packages are the versions the study runs locally (torch: the CPU build).
3. A Bento's image is a two-stage Dockerfile generated here: stage one makes /app/.venv from the
   wheels (`pip install --no-index`), stage two is the base with that venv, the Bento and its
   model (as `bentoml containerize` lays them out: /home/bentoml/bento, models under it) and the
   user of the K3s pod spec (bentoml, uid/gid 1034). It is built with `docker build --network
   none` (the legacy builder: no BuildKit image can be fetched here) and tagged as the K3s
   overlays expect: `[<registry>/]<repository>/<Bento name>:<Bento version>`.

Every step is idempotent (a record whose image still exists, built from the same inputs, is
reused) and writes a JSON record under <results>/images/ (or <results>/wheelhouse/) with what it
built, its digest, size and build time in seconds. A failed step raises ImageBuildError with a
one-line summary and the tail of the failing command's output.

The images run on the docker target (servebench.deploy.docker: the container as the K3s pod
spec asks) and on the K3s target (its containerize step builds the same image). By hand:
`servebench image build --variant NAME` (the workflow's `image` rule), or the steps one by one
with `python -m servebench.deploy.images {dockerd,base,wheelhouse,image,all}`.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servebench.bento import bento_path, model_path, requirements_file
from servebench.deploy.podspec import container_settings, load_deployment
from servebench.errors import UserError
from servebench.layout import Layout
from servebench.provenance import REPO_ROOT, write_json

CONTAINERS_DIR = REPO_ROOT / "containers"
DOCKERD_SCRIPT = CONTAINERS_DIR / "dockerd.sh"
DOCKERFILE_TEMPLATE = CONTAINERS_DIR / "Dockerfile.bento.template"
LOCK_FILE = REPO_ROOT / "envs" / "requirements.lock"

# The base image.
DEBIAN_SUITE = "bookworm"
DEBIAN_VARIANT = "minbase"
DEBIAN_PACKAGES = ("python3", "python3-venv", "python3-pip")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_REPOSITORY = "servebench-base"
# What the image does not need: documentation, apt's indexes and caches, logs. Copyright files
# under /usr/share/doc stay (the licences of what the image ships).
TRIMMED_GLOBS = (
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/cache/ldconfig/aux-cache",
    "var/log/*",
    "debootstrap",
    "dev/*",
    "proc/*",
    "sys/*",
    "run/*",
    "tmp/*",
)

# The Bento images: the layout and user of BentoML's own images, which the K3s pod spec
# (k3s/base/deployment.yaml) assumes: runAsUser/runAsGroup 1034, emptyDirs under /home/bentoml.
BENTO_USER = "bentoml"
BENTO_UID = 1034
BENTO_HOME = "/home/bentoml"
BENTO_PATH = f"{BENTO_HOME}/bento"
VENV_PATH = "/app/.venv"
CONTAINER_PORT = 3000
IMAGE_REPOSITORY = "servebench"
INPUTS_LABEL = "io.servebench.inputs"
# The folder of an image's record: a newer image of the same variant there replaces it.
RECORDS_LABEL = "io.servebench.records"
# Runtimes whose wheels are fetched by default (the CUDA ones need a GPU node and GBs of wheels).
CPU_RUNTIMES = ("pytorch", "onnx", "onnx-int8")
# A CPU image must not carry CUDA libraries (nvidia_cublas_cu12, ..., triton); nvidia-ml-py, a
# pure-Python NVML binding bentoml depends on, is not one of them.
CUDA_WHEEL = re.compile(r"^(nvidia_[a-z0-9_]+_cu\d+|triton)-", re.IGNORECASE)
OUTPUT_TAIL_LINES = 20


class ImageBuildError(UserError):
    """An image could not be built; the first line says which step failed and why (shown as
    one line by `servebench image`, like any UserError)."""


# ------------------------------------------------------------------------------- commands


def docker_exe() -> str:
    found = shutil.which("docker")
    if found is None:
        raise ImageBuildError("no `docker` command on PATH (run containers/dockerd.sh first)")
    return found


def docker_env() -> dict[str, str]:
    """The environment of docker commands: the legacy builder (no buildx, no BuildKit image)."""
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"
    env.setdefault("DOCKER_CLI_HINTS", "false")
    return env


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(
    command: Sequence[str],
    what: str,
    log: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    input_bytes: bytes | None = None,
    timeout_s: float | None = None,
) -> str:
    """Run a command, log it, and raise ImageBuildError (naming `what`) when it fails."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            list(command),
            env=env,
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
        )
    except FileNotFoundError as error:
        raise ImageBuildError(f"{what}: command not found: {command[0]}") from error
    except subprocess.TimeoutExpired as error:
        raise ImageBuildError(f"{what}: no answer within {timeout_s:.0f} s") from error
    output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(
                f"# {what} ({time.monotonic() - started:.1f} s, exit {result.returncode})\n"
                f"$ {' '.join(command)}\n{output}\n"
            )
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{_tail(output)}")
    return output


def docker_available() -> str | None:
    """None when a Docker daemon answers; otherwise why not (for skips and messages)."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"docker info failed: {error}"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        return f"no Docker daemon answers ({lines[-1]})"
    return None


def ensure_dockerd(script: str | Path = DOCKERD_SCRIPT, log: Path | None = None) -> str:
    """Install and start dockerd when no daemon answers (containers/dockerd.sh); the server
    version. A daemon that answers already, whoever started it, is left alone."""
    if docker_available() is None:
        return _server_version()
    _run(["bash", str(script)], "starting dockerd (containers/dockerd.sh)", log, timeout_s=900)
    reason = docker_available()
    if reason is not None:
        raise ImageBuildError(f"dockerd.sh finished but {reason}")
    return _server_version()


def _server_version() -> str:
    return _run([docker_exe(), "version", "--format", "{{.Server.Version}}"], "docker version")


def image_inspect(image: str) -> dict[str, Any] | None:
    """`docker image inspect` of an image, or None when the daemon does not have it."""
    result = subprocess.run(
        [docker_exe(), "image", "inspect", image],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------ the base


def base_record_path(results_dir: str | Path) -> Path:
    return Layout(results_dir).images_dir / "base.json"


def release_epoch(rootfs: Path) -> int:
    """The suite's Release date (seconds): the clamp for file times, so it moves only when the
    mirror's suite moves (and with it the packages)."""
    for release in sorted((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Release")):
        for line in release.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Date:"):
                return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
    raise ImageBuildError(f"debootstrap left no Release file under {rootfs}/var/lib/apt/lists")


def dpkg_packages(rootfs: Path) -> list[str]:
    """`name=version` of every package installed in a root filesystem, sorted."""
    output = _run(
        [
            "dpkg-query",
            "--admindir",
            str(rootfs / "var/lib/dpkg"),
            "-W",
            "-f",
            "${Package}=${Version}\n",
        ],
        "listing the base image's packages",
    )
    return sorted(line for line in output.splitlines() if line.strip())


def _trim_and_normalise(rootfs: Path, epoch: int) -> None:
    """Drop what the image does not need and what differs between two identical builds."""
    for pattern in TRIMMED_GLOBS:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    doc = rootfs / "usr" / "share" / "doc"
    for path in sorted(doc.rglob("*"), reverse=True) if doc.is_dir() else []:
        if path.name == "copyright" or (path.is_dir() and any(path.iterdir())):
            continue
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    # The day of the last password change is the build day: make it the suite's date.
    shadow = rootfs / "etc" / "shadow"
    if shadow.is_file():
        day = str(epoch // 86400)
        lines = []
        for line in shadow.read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2]:
                fields[2] = day
            lines.append(":".join(fields))
        shadow.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("shadow-", "gshadow-", "passwd-", "group-", "subuid-", "subgid-"):
        (rootfs / "etc" / name).unlink(missing_ok=True)
    # Written by the container runtime, never by the image.
    for name in ("hostname", "hosts", "resolv.conf"):
        path = rootfs / "etc" / name
        if path.is_file() and not path.is_symlink():
            path.write_text("", encoding="utf-8")


def write_rootfs_tar(rootfs: Path, tar_path: Path, epoch: int, log: Path | None = None) -> str:
    """A normalised tar of `rootfs` (sorted, times clamped to `epoch`, numeric owners, no
    atime/ctime); its sha256 (the image layer's diff id)."""
    names = sorted(entry.name for entry in rootfs.iterdir())
    _run(
        [
            "tar",
            "--create",
            "--file",
            str(tar_path),
            "--directory",
            str(rootfs),
            "--sort=name",
            "--format=posix",
            "--numeric-owner",
            f"--mtime=@{epoch}",
            "--clamp-mtime",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--xattrs",
            "--",
            *names,
        ],
        "writing the base root filesystem tar",
        log,
        env={**os.environ, "LC_ALL": "C"},
    )
    return file_sha256(tar_path)


def base_image_config(layer_sha256: str, epoch: int, packages: list[str]) -> bytes:
    """The image config: a function of the layer and the suite's date only, so the image id
    (its sha256) is the same for the same root filesystem."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    command = (
        f"debootstrap --variant={DEBIAN_VARIANT} --include={','.join(DEBIAN_PACKAGES)} "
        f"{DEBIAN_SUITE}"
    )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["/usr/bin/python3"],
            "Labels": {
                "io.servebench.debian.suite": DEBIAN_SUITE,
                "io.servebench.debian.variant": DEBIAN_VARIANT,
                "io.servebench.debian.packages.sha256": hashlib.sha256(
                    "\n".join(packages).encode()
                ).hexdigest(),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha256}"]},
        "history": [{"created": created, "created_by": command}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def load_base_image(
    tar_path: Path, layer_sha256: str, config: bytes, image: str, log: Path | None = None
) -> str:
    """`docker load` a one-layer image (docker-archive format) made of `tar_path`; its id."""
    config_id = hashlib.sha256(config).hexdigest()
    manifest = [
        {
            "Config": f"{config_id}.json",
            "RepoTags": [image],
            "Layers": [f"{layer_sha256}/layer.tar"],
        }
    ]
    with tempfile.TemporaryDirectory(dir=tar_path.parent) as temporary:
        archive = Path(temporary) / "image.tar"
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as out:
            for name, data in (
                (f"{config_id}.json", config),
                ("manifest.json", json.dumps(manifest).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            out.add(tar_path, arcname=f"{layer_sha256}/layer.tar")
        _run([docker_exe(), "load", "--input", str(archive)], f"docker load of {image}", log)
    return f"sha256:{config_id}"


def build_base_image(
    results_dir: str | Path,
    *,
    mirror: str = DEBIAN_MIRROR,
    force: bool = False,
    log: str | Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the Debian base image; write and return <results>/images/base.json."""
    results_dir = Path(results_dir).resolve()
    record_path = base_record_path(results_dir)
    work = Layout(results_dir).images_dir / "base"
    tar_path = work / "rootfs.tar"
    log_path = Path(log) if log else work / "build.log"
    recorded = _read_record(record_path)
    if recorded and not force:
        present = image_inspect(recorded["image"])
        if present is not None and present["Id"] == recorded["image_id"]:
            return {**recorded, "reused": True}
        # The daemon lost the image (a fresh dockerd): load the tar we made, when it is intact.
        if tar_path.is_file() and file_sha256(tar_path) == recorded["rootfs_sha256"]:
            started = time.monotonic()
            config = base_image_config(
                recorded["rootfs_sha256"], recorded["source_date_epoch"], recorded["packages"]
            )
            image_id = load_base_image(
                tar_path, recorded["rootfs_sha256"], config, recorded["image"], log_path
            )
            if image_id != recorded["image_id"]:
                raise ImageBuildError(
                    f"reloading {tar_path} gave image {image_id}, not the recorded "
                    f"{recorded['image_id']}"
                )
            record = {
                **recorded,
                "reused": True,
                "reloaded_s": round(time.monotonic() - started, 1),
            }
            write_json(record_path, record)
            return record
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed (apt-get install debootstrap) and no base image is "
            f"recorded in {record_path}"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root to build the base root filesystem")
    rootfs = work / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _run(
        [
            "debootstrap",
            f"--variant={DEBIAN_VARIANT}",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(rootfs),
            mirror,
        ],
        f"debootstrap {DEBIAN_SUITE} into {rootfs}",
        log_path,
        env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
        timeout_s=1200,
    )
    debootstrap_s = time.monotonic() - started
    epoch = release_epoch(rootfs)
    packages = dpkg_packages(rootfs)
    _trim_and_normalise(rootfs, epoch)
    started = time.monotonic()
    layer_sha256 = write_rootfs_tar(rootfs, tar_path, epoch, log_path)
    shutil.rmtree(rootfs)
    image = f"{BASE_REPOSITORY}:{layer_sha256[:12]}"
    config = base_image_config(layer_sha256, epoch, packages)
    image_id = load_base_image(tar_path, layer_sha256, config, image, log_path)
    load_s = time.monotonic() - started
    inspected = image_inspect(image)
    if inspected is None or inspected["Id"] != image_id:
        raise ImageBuildError(f"docker load reported success but {image} is not {image_id}")
    record = {
        "image": image,
        "image_id": image_id,
        "rootfs_sha256": layer_sha256,
        "rootfs_tar": str(tar_path),
        "size_bytes": int(inspected["Size"]),
        "suite": DEBIAN_SUITE,
        "variant": DEBIAN_VARIANT,
        "include": list(DEBIAN_PACKAGES),
        "mirror": mirror,
        "source_date_epoch": epoch,
        "packages": packages,
        "python": next((p for p in packages if p.startswith("python3.11=")), None),
        "debootstrap_s": round(debootstrap_s, 1),
        "tar_and_load_s": round(load_s, 1),
        "build_s": round(debootstrap_s + load_s, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reused": False,
    }
    write_json(record_path, record)
    return record


def external_base_record(
    image: str, *, pull: bool = True, log: str | Path | None = None
) -> dict[str, Any]:
    """A registry image (e.g. python:3.11-slim) as the base instead of the Debian one: pulled
    when the daemon lacks it (needs network), checked to run Python 3.11 (the wheels are cp311)."""
    inspected = image_inspect(image)
    log_path = Path(log) if log else None
    if inspected is None:
        if not pull:
            raise ImageBuildError(f"the base image {image} is not in the Docker daemon")
        _run([docker_exe(), "pull", image], f"docker pull {image}", log_path, timeout_s=1800)
        inspected = image_inspect(image)
        if inspected is None:
            raise ImageBuildError(f"docker pull {image} reported success but there is no image")
    version = _run(
        [
            docker_exe(),
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            "import sys, venv; print('%d.%d' % sys.version_info[:2])",
        ],
        f"checking Python in {image}",
        log_path,
        timeout_s=120,
    ).strip()
    if version.splitlines()[-1:] != ["3.11"]:
        raise ImageBuildError(f"{image} runs Python {version!r}; the wheelhouse is for 3.11")
    return {
        "image": image,
        "image_id": inspected["Id"],
        "size_bytes": int(inspected["Size"]),
        "external": True,
        "reused": True,
    }


# ------------------------------------------------------------------------- the wheelhouse


def wheelhouse_record_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / "wheelhouse" / "wheelhouse.json"


def _requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file, without pip options (index URLs:
    the wheels come from pip's own configured sources, and the image never sees an index)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _lock_pin(lock: Path, name: str) -> str:
    wanted = re.sub(r"[-_.]+", "-", name.lower())
    for line in _requirement_lines(lock):
        pin_name = re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0]
        if re.sub(r"[-_.]+", "-", pin_name.lower()) == wanted:
            return line
    raise ImageBuildError(f"{lock} pins no {name!r}")


def runtime_requirements(runtime: str, lock: Path = LOCK_FILE) -> list[str]:
    """What a runtime's image installs: the Bento's requirements and the bentoml that serves it."""
    return [_lock_pin(lock, "bentoml"), *_requirement_lines(requirements_file(runtime))]


def wheel_pin(filename: str) -> str:
    """`name==version` of a wheel file name (PEP 427)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise ImageBuildError(f"not a wheel file name: {filename}")
    return f"{parts[0].replace('_', '-').lower()}=={parts[1]}"


def build_wheelhouse(
    results_dir: str | Path,
    runtimes: Sequence[str] = CPU_RUNTIMES,
    *,
    lock: str | Path = LOCK_FILE,
    force: bool = False,
    log: str | Path | None = None,
) -> dict[str, Any]:
    """Wheels of every runtime's requirements in <results>/wheelhouse/wheels (one shared
    folder), each runtime's exact pins in <results>/wheelhouse/<runtime>.txt; the record."""
    results_dir = Path(results_dir).resolve()
    lock = Path(lock)
    root = results_dir / "wheelhouse"
    wheels_dir = root / "wheels"
    record_path = wheelhouse_record_path(results_dir)
    log_path = Path(log) if log else root / "build.log"
    recorded = _read_record(record_path) or {"runtimes": {}}
    runtimes_record: dict[str, Any] = dict(recorded.get("runtimes", {}))
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for runtime in runtimes:
        requirements = runtime_requirements(runtime, lock)
        inputs_sha256 = hashlib.sha256(
            json.dumps(
                {"requirements": requirements, "lock": file_sha256(lock), "python": "cp311"},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        previous = runtimes_record.get(runtime)
        if (
            previous
            and not force
            and previous["inputs_sha256"] == inputs_sha256
            and all((wheels_dir / name).is_file() for name in previous["wheels"])
        ):
            runtimes_record[runtime] = {**previous, "reused": True}
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=root) as temporary:
            temporary_dir = Path(temporary)
            request = temporary_dir / "requirements.in"
            request.write_text("\n".join(requirements) + "\n", encoding="utf-8")
            out_dir = temporary_dir / "wheels"
            # Constraints: the lock; a requirement it pins otherwise is a resolution error.
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--disable-pip-version-check",
                    "--wheel-dir",
                    str(out_dir),
                    "--requirement",
                    str(request),
                    "--constraint",
                    str(lock),
                ],
                f"pip wheel for runtime {runtime!r}",
                log_path,
                timeout_s=1800,
            )
            names = sorted(path.name for path in out_dir.glob("*.whl"))
            cuda = [name for name in names if CUDA_WHEEL.match(name)]
            cuda += [name for name in names if name.startswith("torch-") and "+cpu" not in name]
            if cuda and "cuda" not in runtime:
                raise ImageBuildError(
                    f"runtime {runtime!r} would put CUDA wheels into a CPU image: "
                    f"{', '.join(cuda[:3])} (is the CPU torch wheel on pip's search path?)"
                )
            for name in names:
                target = wheels_dir / name
                if not target.is_file():
                    shutil.move(str(out_dir / name), target)
        pins = sorted(wheel_pin(name) for name in names)
        pins_path = root / f"{runtime}.txt"
        pins_path.write_text(
            f"# The exact packages of the {runtime!r} Bento image (servebench.images).\n"
            + "\n".join(pins)
            + "\n",
            encoding="utf-8",
        )
        runtimes_record[runtime] = {
            "requirements": requirements,
            "inputs_sha256": inputs_sha256,
            "wheels": names,
            "pins_file": str(pins_path),
            "pins_sha256": file_sha256(pins_path),
            "wheels_bytes": sum((wheels_dir / name).stat().st_size for name in names),
            "build_s": round(time.monotonic() - started, 1),
            "reused": False,
        }
    record = {
        "wheels_dir": str(wheels_dir),
        "lock": str(lock),
        "lock_sha256": file_sha256(lock),
        "runtimes": runtimes_record,
    }
    write_json(record_path, record)
    return record


# -------------------------------------------------------------------------- Bento images


def image_ref(bento_tag: str, repository: str = IMAGE_REPOSITORY, registry: str = "") -> str:
    """`[<registry>/]<repository>/<Bento name>:<Bento version>`, the tag the K3s overlays use
    (servebench.deploy.k3s.image_name)."""
    name, _, version = bento_tag.partition(":")
    if not version:
        raise ImageBuildError(f"Bento tag {bento_tag!r} has no version")
    parts = [registry, repository, name]
    return "/".join(part.strip("/") for part in parts if part) + f":{version}"


def writable_paths() -> list[str]:
    """The pod spec's emptyDir paths (k3s/base/deployment.yaml), which the image holds as
    world-writable folders (see the template)."""
    return container_settings(load_deployment())["writable_paths"]


def render_dockerfile(base_image: str, runtime: str, entrypoint: Sequence[str]) -> str:
    template = DOCKERFILE_TEMPLATE.read_text(encoding="utf-8")
    values = {
        "WRITABLE_PATHS": " ".join(writable_paths()),
        "BASE_IMAGE": base_image,
        "RUNTIME": runtime,
        "VENV_PATH": VENV_PATH,
        "BENTO_USER": BENTO_USER,
        "BENTO_UID": str(BENTO_UID),
        "BENTO_HOME": BENTO_HOME,
        "BENTO_PATH": BENTO_PATH,
        "CONTAINER_PORT": str(CONTAINER_PORT),
        "ENTRYPOINT": json.dumps(list(entrypoint)),
    }
    text = template
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise ImageBuildError(f"{DOCKERFILE_TEMPLATE}: unknown placeholders {left}")
    return text


def _copy_tree_readable(source: Path, target: Path) -> None:
    """Copy a folder for an image: modes readable by everyone (the container's user is not the
    files' owner), no owners or times kept."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for path in [target, *target.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)


def stage_bento_context(
    context: Path, bento_record: dict[str, Any], pins_path: Path, wheel_paths: list[Path]
) -> Path:
    """The build context: the Bento with its model under models/ (as `bentoml containerize`
    lays it out), the wheels (hard links) and the exact pins."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    home = Path(bento_record["bentoml_home"])
    source = bento_path(home, bento_record["tag"])
    if not source.is_dir():
        raise ImageBuildError(f"the Bento {bento_record['tag']} is not in {home}/bentos")
    bento_dir = context / "bento"
    _copy_tree_readable(source, bento_dir)
    model_source = model_path(home, bento_record["model_tag"])
    if not model_source.is_dir():
        raise ImageBuildError(f"the model {bento_record['model_tag']} is not in {home}/models")
    name, version = bento_record["model_tag"].split(":")
    _copy_tree_readable(model_source, bento_dir / "models" / name / version)
    latest = bento_dir / "models" / name / "latest"
    latest.write_text(version, encoding="utf-8")
    wheels = context / "wheels"
    wheels.mkdir()
    for path in wheel_paths:
        try:
            os.link(path, wheels / path.name)
        except OSError:
            shutil.copyfile(path, wheels / path.name)
    shutil.copyfile(pins_path, context / "requirements.txt")
    return bento_dir


def bento_image_inputs(
    bento_record: dict[str, Any], base_record: dict[str, Any], runtime_wheels: dict[str, Any]
) -> dict[str, Any]:
    """What a Bento image is made of; its hash (a label of the image) decides reuse."""
    return {
        "bento_tag": bento_record["tag"],
        "model_tag": bento_record["model_tag"],
        "base_image_id": base_record["image_id"],
        "pins_sha256": runtime_wheels["pins_sha256"],
        "dockerfile_template_sha256": file_sha256(DOCKERFILE_TEMPLATE),
        "uid": BENTO_UID,
        "writable_paths": writable_paths(),
    }


def build_bento_image(
    bento_record: dict[str, Any],
    base_record: dict[str, Any],
    wheelhouse_record: dict[str, Any],
    results_dir: str | Path,
    *,
    repository: str = IMAGE_REPOSITORY,
    registry: str = "",
    force: bool = False,
    log: str | Path | None = None,
    records_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the image of one Bento; write and return <records_dir>/<variant>.json
    (default <results>/images/; the build context and its wheels go under <results>/images/)."""
    results_dir = Path(results_dir).resolve()
    variant = bento_record["variant"]
    runtime = bento_record["settings"]["runtime"]
    runtime_wheels = wheelhouse_record["runtimes"].get(runtime)
    if runtime_wheels is None:
        raise ImageBuildError(
            f"the wheelhouse has no wheels for runtime {runtime!r} (variant {variant!r}); "
            "build it with build_wheelhouse(results_dir, [runtime])"
        )
    image = image_ref(bento_record["tag"], repository, registry)
    inputs = bento_image_inputs(bento_record, base_record, runtime_wheels)
    inputs_sha256 = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    layout = Layout(results_dir)
    record_path = (
        Path(records_dir) / f"{variant}.json" if records_dir else layout.image_record(variant)
    )
    records = record_path.parent
    records.mkdir(parents=True, exist_ok=True)
    log_path = Path(log) if log else records / f"{variant}.build.log"
    present = image_inspect(image)
    recorded = _read_record(record_path)
    labels = ((present or {}).get("Config") or {}).get("Labels") or {}
    if present is not None and not force and labels.get(INPUTS_LABEL) == inputs_sha256:
        if recorded and recorded.get("image_id") == present["Id"]:
            return {**recorded, "reused": True}
        record = {
            "variant": variant,
            "image": image,
            "image_id": present["Id"],
            "size_bytes": int(present["Size"]),
            "inputs": inputs,
            "inputs_sha256": inputs_sha256,
            "build_s": None,
            "reused": True,
        }
        write_json(record_path, record)
        return record
    base_image = base_record["image"]
    if image_inspect(base_image) is None:
        raise ImageBuildError(f"the base image {base_image} is not in the Docker daemon")
    wheels_dir = Path(wheelhouse_record["wheels_dir"])
    wheel_paths = [wheels_dir / name for name in runtime_wheels["wheels"]]
    missing = [path.name for path in wheel_paths if not path.is_file()]
    if missing:
        raise ImageBuildError(f"wheels missing from {wheels_dir}: {', '.join(missing[:3])}")
    context = layout.images_dir / "build" / variant
    started = time.monotonic()
    bento_dir = stage_bento_context(
        context, bento_record, Path(runtime_wheels["pins_file"]), wheel_paths
    )
    # BentoML's own entrypoint (what `bentoml containerize` images run): `bentoml serve
    # $BENTO_PATH` with no arguments, BentoML's commands with some.
    entrypoint_script = bento_dir / "env" / "docker" / "entrypoint.sh"
    if entrypoint_script.is_file():
        entrypoint_script.chmod(0o755)
        entrypoint = [f"{BENTO_PATH}/env/docker/entrypoint.sh"]
    else:
        entrypoint = [f"{VENV_PATH}/bin/bentoml", "serve", BENTO_PATH]
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(render_dockerfile(base_image, runtime, entrypoint), encoding="utf-8")
    try:
        _run(
            [
                docker_exe(),
                "build",
                "--network",
                "none",
                "--pull=false",
                "--force-rm",
                "--file",
                str(dockerfile),
                "--tag",
                image,
                "--label",
                f"{INPUTS_LABEL}={inputs_sha256}",
                "--label",
                f"io.servebench.bento={bento_record['tag']}",
                "--label",
                f"io.servebench.variant={variant}",
                "--label",
                f"io.servebench.base={base_record['image_id']}",
                "--label",
                f"{RECORDS_LABEL}={records.resolve()}",
                str(context),
            ],
            f"docker build of {image}",
            log_path,
            env=docker_env(),
            timeout_s=1800,
        )
    finally:
        kept = records / f"{variant}.Dockerfile"
        if dockerfile.is_file():
            shutil.copyfile(dockerfile, kept)
        shutil.rmtree(context, ignore_errors=True)
    build_s = time.monotonic() - started
    inspected = image_inspect(image)
    if inspected is None:
        raise ImageBuildError(f"docker build reported success but there is no image {image}")
    # The legacy builder keeps the build stage (wheels + venv) as an untagged image: drop it
    # (labelled io.servebench.stage=build in the template).
    subprocess.run(
        [docker_exe(), "image", "prune", "--force", "--filter", "label=io.servebench.stage=build"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    # The images this variant had before under these records (the tag's previous image, older
    # Bentos' images: a new Bento has a new tag) are replaced: remove them (refused, harmlessly,
    # while a container still uses one).
    older = [present["Id"]] if present is not None else []
    listed = subprocess.run(
        [docker_exe(), "images", "--quiet", "--no-trunc"]
        + ["--filter", f"label={RECORDS_LABEL}={records.resolve()}"]
        + ["--filter", f"label=io.servebench.variant={variant}"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    older += listed.stdout.split() if listed.returncode == 0 else []
    for image_id in dict.fromkeys(older):
        if image_id != inspected["Id"]:
            subprocess.run(
                [docker_exe(), "image", "rm", "--force", image_id],
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
    record = {
        "variant": variant,
        "image": image,
        "image_id": inspected["Id"],
        "size_bytes": int(inspected["Size"]),
        "base_image": base_image,
        "base_size_bytes": int(base_record["size_bytes"]),
        "runtime": runtime,
        "packages": len(runtime_wheels["wheels"]),
        "dockerfile": str(records / f"{variant}.Dockerfile"),
        "user": f"{BENTO_UID}:{BENTO_UID}",
        "port": CONTAINER_PORT,
        "inputs": inputs,
        "inputs_sha256": inputs_sha256,
        "build_s": round(build_s, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reused": False,
    }
    write_json(record_path, record)
    return record


def ensure_bento_image(
    bento_record: dict[str, Any],
    results_dir: str | Path,
    *,
    repository: str = IMAGE_REPOSITORY,
    registry: str = "",
    records_dir: str | Path | None = None,
    start_dockerd: bool = True,
    log: str | Path | None = None,
) -> dict[str, Any]:
    """One Bento's image with all it needs (dockerd, the base, its runtime's wheels): what the
    workflow's `image` rule, `servebench image build` and the K3s target's containerize step
    run; reuses whatever exists and is up to date."""
    if start_dockerd:
        ensure_dockerd()
    base = build_base_image(results_dir)
    wheels = build_wheelhouse(results_dir, [bento_record["settings"]["runtime"]])
    return build_bento_image(
        bento_record,
        base,
        wheels,
        results_dir,
        repository=repository,
        registry=registry,
        records_dir=records_dir,
        log=log,
    )


def build_all(
    results_dir: str | Path,
    bento_jsons: Sequence[str | Path],
    *,
    repository: str = IMAGE_REPOSITORY,
    registry: str = "",
    start_dockerd: bool = True,
    base_image: str | None = None,
) -> list[dict[str, Any]]:
    """dockerd, the base (Debian's, or `base_image` from a registry), the wheels of the Bentos'
    runtimes and each Bento's image."""
    records = []
    for path in bento_jsons:
        try:
            records.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise ImageBuildError(f"{path}: not a Bento record ({error})") from error
    if start_dockerd:
        ensure_dockerd()
    base = external_base_record(base_image) if base_image else build_base_image(results_dir)
    runtimes = sorted({record["settings"]["runtime"] for record in records})
    wheels = build_wheelhouse(results_dir, runtimes)
    return [
        build_bento_image(
            record, base, wheels, results_dir, repository=repository, registry=registry
        )
        for record in records
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m servebench.deploy.images {dockerd,base,wheelhouse,image,all} ...`: one line
    per result (JSON); errors as one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("dockerd", help="install and start dockerd when no daemon answers")
    base = sub.add_parser("base", help="the Debian base image")
    base.add_argument("--results-dir", type=Path, default=Path("results"))
    base.add_argument("--mirror", default=DEBIAN_MIRROR)
    base.add_argument("--force", action="store_true")
    wheelhouse = sub.add_parser("wheelhouse", help="wheels of the runtimes' requirements")
    wheelhouse.add_argument("--results-dir", type=Path, default=Path("results"))
    wheelhouse.add_argument("--runtime", action="append", dest="runtimes")
    wheelhouse.add_argument("--force", action="store_true")
    for name in ("image", "all"):
        step = sub.add_parser(name, help="Bento images from results/.../bentos/<variant>.json")
        step.add_argument("bento_json", nargs="+", type=Path)
        step.add_argument("--results-dir", type=Path, default=Path("results"))
        step.add_argument("--repository", default=IMAGE_REPOSITORY)
        step.add_argument("--registry", default="")
        step.add_argument(
            "--base-image",
            help="a registry image with Python 3.11 (e.g. python:3.11-slim) instead of the "
            "Debian base made here; pulled when missing (needs network)",
        )
    args = parser.parse_args(argv)
    try:
        if args.step == "dockerd":
            results: list[Any] = [{"docker_server": ensure_dockerd()}]
        elif args.step == "base":
            results = [build_base_image(args.results_dir, mirror=args.mirror, force=args.force)]
        elif args.step == "wheelhouse":
            results = [
                build_wheelhouse(args.results_dir, args.runtimes or CPU_RUNTIMES, force=args.force)
            ]
        else:
            results = build_all(
                args.results_dir,
                args.bento_json,
                repository=args.repository,
                registry=args.registry,
                start_dockerd=args.step == "all",
                base_image=args.base_image,
            )
    except ImageBuildError as error:
        print(f"servebench.deploy.images {args.step}: error: {error}", file=sys.stderr)
        return 2
    for result in results:
        keep = ("image", "image_id", "size_bytes", "build_s", "reused", "docker_server")
        summary = {key: result[key] for key in keep if key in result}
        if "runtimes" in result:
            summary = {
                runtime: {key: entry[key] for key in ("wheels_bytes", "build_s", "reused")}
                for runtime, entry in result["runtimes"].items()
            }
        print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
