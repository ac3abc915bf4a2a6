"""Shared test setup: offline hub, no telemetry, paths of the repository."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

# A shell that starts a job in the background (`cmd &`, nohup) starts it with SIGINT ignored,
# and ignored signals stay ignored across exec: the interrupt tests' children would then
# never see their Ctrl-C. A handled signal is reset to the default on exec, so handle it here.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]


# pytest-timeout counts a test's fixtures' setup too: the test that first asks for the docker
# study waits for the tiny study and then the docker study (each several minutes here).
DOCKER_STUDY_TIMEOUT_S = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "docker_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(DOCKER_STUDY_TIMEOUT_S))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def venv_tool(name: str) -> str:
    """A console script of the environment running the tests (e.g. snakemake, servebench)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed in the test environment")
    return found


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    return venv_tool("snakemake")


@pytest.fixture(scope="session")
def servebench_exe() -> str:
    return venv_tool("servebench")


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    """The tiny model's runtimes and its baseline and optimized Bentos (tests/bento_testbed.py),
    built once per session."""
    from bento_testbed import tiny_testbed

    return tiny_testbed(tmp_path_factory)


@pytest.fixture(scope="session")
def study_run(snakemake_exe, tmp_path_factory) -> tuple[Path, str]:
    """The tiny study run once, to completion (tests/study_testbed.py): its results folder and
    what Snakemake printed."""
    from study_testbed import run_tiny_study

    return run_tiny_study(snakemake_exe, tmp_path_factory.mktemp("study") / "results")


@pytest.fixture(scope="session")
def docker_study(study_run, snakemake_exe, tmp_path_factory):
    """The tiny study on the docker target (tests/docker_testbed.py), run once per session on a
    copy of the tiny study's folder: its images, calibrations, runs and resilience runs; skips
    where Docker cannot run. The images it built are removed at the session's end."""
    from docker_testbed import remove_images, run_docker_study

    study = run_docker_study(
        snakemake_exe, study_run[0], tmp_path_factory.mktemp("docker-study") / "results"
    )
    yield study
    remove_images(study)


@pytest.fixture(scope="session")
def testbed_payloads(tmp_path_factory):
    """A payloads CSV of 100 seeded texts of the tiny model's vocabulary."""
    import csv

    from bento_testbed import sample_texts

    path = tmp_path_factory.mktemp("payloads") / "payloads.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for text in sample_texts(100, seed=3):
            writer.writerow([text])
    return path
