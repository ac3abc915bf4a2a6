"""External commands of the K3s target: each one logged with its output and exit status to
`<run>/deploy.log`, a failure raised as K3sStepError naming the step and showing the tail of
its stderr; and the image build (`servebench image build`: the offline build the docker
target runs, servebench.deploy.images) and transfer to the cluster."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servebench.children import guarded
from servebench.deploy.k3s.manifests import image_name
from servebench.settings import K3sTarget

log = logging.getLogger(__name__)


STDERR_TAIL_LINES = 25


class K3sStepError(RuntimeError):
    """A step of the K3s deployment failed; `step` names it, the message says why."""

    def __init__(self, step: str, message: str, stderr_tail: str = "") -> None:
        self.step = step
        self.stderr_tail = stderr_tail
        text = f"k3s step '{step}' failed: {message}"
        if stderr_tail:
            text += f"\n{stderr_tail}"
        super().__init__(text)


class CommandRunner:
    """Runs external commands, appending each one's command line, output and exit status to
    the run log; a failure raises K3sStepError with the step's name and the stderr tail."""

    def __init__(self, log_path: str | Path, timeout_s: float = 1800.0) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.commands: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock, self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(text)

    def run(
        self,
        step: str,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout_s: float | None = None,
        env: dict[str, str] | None = None,
        quiet: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run `command`; with check, a non-zero exit is a K3sStepError of `step`."""
        command = [str(part) for part in command]
        shown = shlex.join(command)
        timeout = timeout_s or self.timeout_s
        started = time.monotonic()
        if not quiet:
            log.info("k3s %s: %s", step, shown)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=env,
            )
        except FileNotFoundError:
            self._write(f"# {step}\n$ {shown}\n(command not found: {command[0]})\n\n")
            raise K3sStepError(
                step, f"command not found: {command[0]} (is it installed?)"
            ) from None
        except subprocess.TimeoutExpired as error:
            output = _text(error.stdout) + _text(error.stderr)
            self._write(f"# {step}\n$ {shown}\n{output}\n(timed out after {timeout:.0f} s)\n\n")
            raise K3sStepError(
                step, f"`{shown}` did not finish within {timeout:.0f} s", _tail(_text(error.stderr))
            ) from None
        elapsed_s = time.monotonic() - started
        self.commands.append(
            {"step": step, "command": command, "returncode": result.returncode, "s": elapsed_s}
        )
        self._write(
            f"# {step}\n$ {shown}\n{result.stdout}{result.stderr}"
            f"(exit {result.returncode}, {elapsed_s:.1f} s)\n\n"
        )
        if check and result.returncode != 0:
            raise K3sStepError(
                step,
                f"`{shown}` exited with code {result.returncode}",
                _tail(result.stderr or result.stdout),
            )
        return result

    def start(self, step: str, command: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command (port-forward); its output goes to the log. It gets
        SIGTERM from the kernel when the calling thread's process dies without stopping it
        (servebench.children): a driver killed by SIGKILL leaves no port-forward behind."""
        command = [str(part) for part in command]
        self._write(f"# {step} (background)\n$ {shlex.join(command)}\n")
        log.info("k3s %s: %s", step, shlex.join(command))
        if shutil.which(command[0]) is None:  # the launcher would only exit with 127
            raise K3sStepError(step, f"command not found: {command[0]} (is it installed?)")
        handle = self.log_path.open("a", encoding="utf-8")
        try:
            return subprocess.Popen(
                guarded(command, death_signal=signal.SIGTERM),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise K3sStepError(
                step, f"command not found: {command[0]} (is it installed?)"
            ) from None
        finally:
            handle.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _split(command: str) -> list[str]:
    return shlex.split(command)


def servebench_command() -> str:
    """`servebench` of PATH (the venv's first when run by the workflow), else the venv's."""
    import sys

    return shutil.which("servebench") or str(Path(sys.executable).with_name("servebench"))


# The Bento an image was built from (a label servebench.deploy.images sets).
BENTO_LABEL = "io.servebench.bento"


def image_present_command(backend: str, image: str) -> list[str]:
    """The Bento label of `image` (fails when there is no such image)."""
    label = "{{index .Config.Labels " + f'"{BENTO_LABEL}"' + "}}"
    return [backend, "image", "inspect", "--format", label, image]


def image_save_command(backend: str, image: str, tar_path: Path) -> list[str]:
    return [backend, "save", "-o", str(tar_path), image]


def ensure_image(
    runner: CommandRunner, settings: K3sTarget, record: dict[str, Any], work_dir: Path
) -> str:
    """The Bento's image, built if needed and made available to the cluster. The build is
    `servebench image build`, the one the docker target's image comes from (not `bentoml
    containerize`, whose image cannot start under the pod's read-only root filesystem and
    which cannot build offline: docs/containers.md): the cluster runs what was tested here."""
    backend = settings.containerize_backend
    name, tag = image_name(settings, record["tag"])
    image = f"{name}:{tag}"
    present = runner.run("image-check", image_present_command(backend, image), check=False)
    # An image of the same tag built otherwise (an older `bentoml containerize`) is replaced.
    if present.returncode != 0 or present.stdout.strip() != record["tag"]:
        # The Bento record the build reads, kept next to the run's files (work_dir, <run>/k3s/,
        # is rendered afresh after this step).
        bento_json = work_dir.parent / "bento.json"
        bento_json.parent.mkdir(parents=True, exist_ok=True)
        bento_json.write_text(json.dumps(record, indent=1), encoding="utf-8")
        runner.run(
            "containerize",
            [servebench_command(), "image", "build", "--bento-json", bento_json]
            + ["--results-dir", settings.results_dir]
            + ["--repository", settings.image_repository]
            + ["--registry", settings.image_registry],
        )
    if settings.image_transfer == "push":
        if not settings.image_registry:
            raise K3sStepError("image-push", "image_transfer push needs deploy.k3s.image_registry")
        runner.run("image-push", [backend, "push", image])
        return image
    k3s = _split(settings.k3s_command)
    listed = runner.run("image-check-cluster", [*k3s, "ctr", "images", "ls", "-q"], check=False)
    known = set(listed.stdout.split()) if listed.returncode == 0 else set()
    if image in known or f"docker.io/{image}" in known:
        return image
    work_dir.mkdir(parents=True, exist_ok=True)
    tar_path = work_dir / "image.tar"
    try:
        runner.run("image-save", image_save_command(backend, image, tar_path))
        runner.run("image-import", [*k3s, "ctr", "images", "import", str(tar_path)])
    finally:
        tar_path.unlink(missing_ok=True)
    return image
