"""The tiny study (`snakemake all --configfile .test/config.yaml`), run once per test session
into a temporary results folder: tests/test_workflow_reruns.py checks its DAG, scheduling and
reruns, tests/test_model.py its model stage; and the same study on the docker target
(tests/docker_testbed.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# As the README asks for the full study: more cores than this 2-core machine has, so that
# the scheduler would run jobs side by side if the measurement rules let it.
CORES = "4"
# The tiny docker profile (`make smoke-docker`): .test/docker.yaml over the tiny profile.
DOCKER_PROFILE = (".test/config.yaml", ".test/docker.yaml")


def snakemake_command(
    snakemake_exe: str,
    results_dir: Path,
    *args: str,
    config: tuple[str, ...] = (),
    configfiles: tuple[str, ...] = (".test/config.yaml",),
) -> list[str]:
    """The tiny profile into `results_dir`; `config`: more `--config` entries (last, since
    --config takes every argument after it)."""
    return [
        snakemake_exe,
        *args,
        "--cores",
        CORES,
        "--configfile",
        *configfiles,
        "--config",
        f"results_dir={results_dir}",
        # The tiny profile's Bento store lives under its own results folder.
        f"deploy={{'bentoml_home': '{results_dir / 'bentoml_home'}'}}",
        *config,
    ]


def job_counts(output: str) -> dict[str, int]:
    """{rule: number of jobs} from the job table that Snakemake prints (`--quiet rules`)."""
    jobs: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                jobs[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return jobs


def run_tiny_study(snakemake_exe: str, results_dir: Path) -> tuple[Path, str]:
    """The whole tiny study, to completion: the folder and what Snakemake printed."""
    result = subprocess.run(
        snakemake_command(snakemake_exe, results_dir, "all"),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return results_dir, result.stdout + result.stderr


def run_tiny_docker_study(
    snakemake_exe: str, local_results: Path, results_dir: Path
) -> tuple[Path, str]:
    """The tiny study on the docker target (`make smoke-docker`: .test/docker.yaml over the
    tiny profile), to completion, in a copy of the finished tiny study's folder: the model,
    the Bentos and the tuning are the local study's (as `make smoke-docker` shares `make
    smoke`'s), and the local study's folder stays as its own tests expect it."""
    shutil.copytree(local_results, results_dir, symlinks=True)
    result = subprocess.run(
        snakemake_command(
            snakemake_exe,
            results_dir,
            "all",
            configfiles=DOCKER_PROFILE,
        ),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return results_dir, result.stdout + result.stderr
