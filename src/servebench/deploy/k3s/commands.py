"""External commands of the K3s target: each one logged with its output and exit status to
`<run>/deploy.log`, a failure raised as K3sStepError naming the step and showing the tail of
its stderr; and the image build (`bentoml containerize`) and transfer to the cluster."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        """Start a long-running command (port-forward); its output goes to the log."""
        command = [str(part) for part in command]
        self._write(f"# {step} (background)\n$ {shlex.join(command)}\n")
        log.info("k3s %s: %s", step, shlex.join(command))
        handle = self.log_path.open("a", encoding="utf-8")
        try:
            return subprocess.Popen(
                command,
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


def bentoml_command() -> str:
    """`bentoml` of PATH (the venv's first when run by the workflow), else the venv's."""
    from servebench.bento import bentoml_exe

    return shutil.which("bentoml") or bentoml_exe()


def image_present_command(backend: str, image: str) -> list[str]:
    if backend == "buildah":
        return ["buildah", "inspect", "--type", "image", image]
    return [backend, "image", "inspect", image]


def image_save_command(backend: str, image: str, tar_path: Path) -> list[str]:
    if backend == "buildah":
        return ["buildah", "push", image, f"docker-archive:{tar_path}:{image}"]
    return [backend, "save", "-o", str(tar_path), image]


def ensure_image(
    runner: CommandRunner, settings: K3sTarget, record: dict[str, Any], work_dir: Path
) -> str:
    """The Bento's image, built by the backend if needed and made available to the cluster."""
    backend = settings.containerize_backend
    name, tag = image_name(settings, record["tag"])
    image = f"{name}:{tag}"
    present = runner.run("image-check", image_present_command(backend, image), check=False)
    if present.returncode != 0:
        from servebench.bento import bentoml_env

        runner.run(
            "containerize",
            [bentoml_command(), "containerize", record["tag"], "--backend", backend]
            + ["--image-tag", image],
            env=bentoml_env(record["bentoml_home"]),
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
