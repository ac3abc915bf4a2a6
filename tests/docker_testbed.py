"""Shared by tests/test_images.py and tests/test_docker_target.py: the tiny study on the docker
target (`make smoke-docker`), run once per test session on a copy of the tiny study's folder
(tests/study_testbed.py). It builds the base image, the wheelhouse and both variants' images
offline (servebench.deploy.images), then runs every calibration, scenario run and resilience
run in a container with the K3s pod's settings; the tests read what it wrote and start the
optimized image it built.

Tests that use it start containers: run them under the heavy-command lock.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from study_testbed import DOCKER_PROFILE, REPO_ROOT, run_tiny_docker_study

from servebench.config import load_config
from servebench.deploy import images
from servebench.layout import Layout

VARIANTS = ("baseline", "optimized")


@dataclass(frozen=True)
class DockerStudy:
    results_dir: Path
    output: str  # what Snakemake printed

    @property
    def layout(self) -> Layout:
        return Layout(self.results_dir)

    @property
    def config(self) -> dict[str, Any]:
        """The study's configuration (but for its results folder)."""
        return load_config(*(REPO_ROOT / path for path in DOCKER_PROFILE))

    def image(self, variant: str) -> dict[str, Any]:
        """The variant's image record (its tag, id, size, build time)."""
        return json.loads(self.layout.image_record(variant).read_text(encoding="utf-8"))

    def bento_record_path(self, variant: str) -> Path:
        return self.layout.bento_record(variant)

    def bento_record(self, variant: str) -> dict[str, Any]:
        return json.loads(self.bento_record_path(variant).read_text(encoding="utf-8"))


def skip_unless_docker_builds() -> None:
    """Skip where Docker cannot run, or the base image cannot be built (debootstrap, root)."""
    reason = images.docker_available()
    if reason is not None:
        pytest.skip(f"Docker cannot run here: {reason} (containers/dockerd.sh starts it)")
    if os.geteuid() != 0 or not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("debootstrap (as root) is not available to build the base image")


def run_docker_study(snakemake_exe: str, local_results: Path, results_dir: Path) -> DockerStudy:
    skip_unless_docker_builds()
    return DockerStudy(*run_tiny_docker_study(snakemake_exe, local_results, results_dir))


def remove_images(study: DockerStudy) -> None:
    """The tiny model's export is not byte-identical from one session to the next, so each
    session's Bentos (and images, 1.3 GB and 0.4 GB) are new: remove those the session built.
    The base image stays (it is the same from one session to the next)."""
    for variant in VARIANTS:
        path = study.layout.image_record(variant)
        if not path.is_file():
            continue
        built = study.image(variant)
        if not built["reused"]:
            subprocess.run(
                ["docker", "image", "rm", built["image_id"]], capture_output=True, check=False
            )
