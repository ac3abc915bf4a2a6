"""The tiny study (`snakemake all --configfile .test/config.yaml`), run once per test session
into a temporary results folder: tests/test_workflow_reruns.py checks its DAG, scheduling and
reruns, tests/test_model.py its model stage."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# As the README asks for the full study: more cores than this 2-core machine has, so that
# the scheduler would run jobs side by side if the measurement rules let it.
CORES = "4"


def snakemake_command(
    snakemake_exe: str, results_dir: Path, *args: str, config: tuple[str, ...] = ()
) -> list[str]:
    """The tiny profile into `results_dir`; `config`: more `--config` entries (last, since
    --config takes every argument after it)."""
    return [
        snakemake_exe,
        *args,
        "--cores",
        CORES,
        "--configfile",
        ".test/config.yaml",
        "--config",
        f"results_dir={results_dir}",
        # The tiny profile's Bento store lives under its own results folder.
        f"deploy={{'bentoml_home': '{results_dir / 'bentoml_home'}'}}",
        *config,
    ]


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
