"""Shared by tests/test_images.py and tests/test_docker_target.py: the tiny optimized Bento's
container image (servebench.deploy.images), built once per test session.

The base image and the wheelhouse are built under results/test/ the first time (debootstrap
needs root and apt's Debian mirror; a few minutes) and reused afterwards. Tests that use the
image start containers: run them under the heavy-command lock.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bento_testbed import tiny_testbed

from servebench.deploy import images

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_RESULTS = REPO_ROOT / "results" / "test"


def build_tiny_image(tmp_path_factory: Any) -> dict[str, Any]:
    """The image record of the test bed's optimized Bento; skips where Docker cannot run."""
    reason = images.docker_available()
    if reason is not None:
        pytest.skip(f"Docker cannot run here: {reason} (containers/dockerd.sh starts it)")
    base_recorded = images.base_record_path(TINY_RESULTS).is_file()
    if not base_recorded and (os.geteuid() != 0 or not Path("/usr/sbin/debootstrap").exists()):
        pytest.skip("no base image recorded and debootstrap (as root) is not available")
    # The test bed's Bento is built from the source tree in this session (the workflow's under
    # results/test/bentos/ may be older than the code); the same Bento gives the same image tag,
    # so an unchanged service reuses its image.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    record = tiny_testbed(tmp_path_factory).records["optimized"]
    # Its record goes to a folder of the test's: results/test/images/optimized.json is the
    # workflow's Bento's.
    records = tmp_path_factory.mktemp("image-records")
    try:
        return images.ensure_bento_image(
            record, TINY_RESULTS, records_dir=records, start_dockerd=False
        )
    except images.ImageBuildError as error:
        pytest.fail(str(error))


def remove_image(built: dict[str, Any]) -> None:
    """The tiny model's export is not byte-identical from one session to the next, so each
    session's Bento (and image) is new: remove the image a session built (417 MB)."""
    if not built["reused"]:
        subprocess.run(
            ["docker", "image", "rm", built["image_id"]], capture_output=True, check=False
        )
