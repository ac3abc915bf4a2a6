"""Snakemake's linter on the workflow, with the default and the tiny configuration.

One lint is expected and allowed: "Specify a conda environment or container for each rule".
The workflow has no `conda:` directives on purpose: its environment is the virtual environment
`make venv` installs from envs/requirements.lock (README, "Development"); a conda file could
not be tested here (no conda channel is reachable) and the last one broke when Snakemake copied
it. Every other lint fails the test."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_TITLE = re.compile(r"^    \* (.+):$")
ALLOWED_LINTS = {"Specify a conda environment or container for each rule."}


def lints(snakemake_exe: str, *configfile: str) -> list[dict[str, str]]:
    """Every lint `snakemake --lint` reports, as {where, title} (Snakemake 9.27's CLI ignores
    `--lint json`, so its text is read: a "Lints for ..." line, then "    * TITLE:" lines)."""
    args = [snakemake_exe, "--lint", "--cores", "1"]
    if configfile:
        args += ["--configfile", *configfile]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    found, where = [], None
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("Lints for "):
            where = line.removeprefix("Lints for ").split(" (")[0]
        elif where and (title := LINT_TITLE.match(line)):
            found.append({"where": where, "title": title.group(1)})
    # Snakemake exits 1 when it found any lint, 0 when none: nothing else may stop it.
    assert done.returncode == (1 if found else 0), done.stdout[-2000:] + done.stderr[-2000:]
    return found


@pytest.mark.parametrize("configfile", [(), (".test/config.yaml",)], ids=["default", "tiny"])
def test_the_workflow_has_no_lint_but_the_missing_conda_directives(snakemake_exe, configfile):
    found = lints(snakemake_exe, *configfile)
    # The rules without a software definition are reported: the report was read.
    assert any(lint["title"] in ALLOWED_LINTS for lint in found), found
    unexpected = [lint for lint in found if lint["title"] not in ALLOWED_LINTS]
    assert not unexpected, unexpected
