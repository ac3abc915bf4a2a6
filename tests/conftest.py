"""Shared test setup: offline hub, no telemetry, paths of the repository."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    """The snakemake of the environment running the tests."""
    import sys

    candidate = Path(sys.executable).parent / "snakemake"
    found = str(candidate) if candidate.exists() else shutil.which("snakemake")
    if not found:
        pytest.fail("snakemake is not installed in the test environment")
    return found
