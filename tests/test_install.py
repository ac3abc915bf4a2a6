"""The installable tool: a wheel built from the working tree, installed into a fresh virtual
environment outside the checkout, runs `servebench loadtest` and `servebench calibrate`
against the bundled test server, and `servebench compare` writes its page there.

The fresh environment installs the wheel alone (`--no-deps`, no index): its dependencies come
from the environment running the tests through a .pth file, so the test downloads and builds
nothing (torch & co. stay where they are). The wheel's copies of the default configuration,
its schema, the corpus and the report's templates must equal config/, data/ and report/ (the
one copy everyone edits).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
from loadgen_tolerance import SEND_LAG_P99_MAX_MS
from test_report import analysis_config, build_results_tree

from servebench import __version__
from servebench.net import free_port, http_get

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
# What the wheel must carry for `servebench loadtest`/`calibrate` outside a checkout.
BUNDLED = {
    "servebench/bundled/config.yaml": REPO_ROOT / "config" / "config.yaml",
    "servebench/bundled/schema.yaml": REPO_ROOT / "config" / "schema.yaml",
    "servebench/bundled/texts.csv": REPO_ROOT / "data" / "texts.csv",
    **{
        f"servebench/bundled/report/{path.relative_to(REPO_ROOT / 'report')}": path
        for path in sorted((REPO_ROOT / "report").rglob("*"))
        if path.is_file()
    },
}
RUNTIME_MODULES = (
    "servebench/loadgen/locustfile.py",
    "servebench/loadgen/sleeper.py",
    "servebench/loadgen/writer.py",
    "servebench/loadgen/testserver.py",
    "servebench/py.typed",
)
# The test server refuses requests without it: -H must reach Locust and the probes.
HEADER = "Authorization: Bearer test-token"
_USABLE = os.sched_getaffinity(0)
SERVER_CPUS, LOADGEN_CPUS = (["--cpus", "0"], ["--cpus", "1"]) if {0, 1} <= _USABLE else ([], [])
# Short calibration steps and a coarse bracket: this test checks the installed command, not
# the search (tests/test_calibration.py does).
FAST_CALIBRATION = {
    "calibration": {
        "min_step_requests": 30,
        "slo_verdict_requests": 30,
        "min_step_duration_s": 1.0,
        "step_warmup_s": 0.3,
        "unloaded_requests": 5,
        "ramp_factor": 4.0,
        "bracket_precision": 1.0,
        "max_steps": 4,
    },
    "measurement": {"foreign_cpu_max_percent": 100},
    # The installation is the subject, not the generator's timing: with 30-request steps the
    # p99 of the send lag is their largest, and a CI run had every step at 64 req/s late.
    "loadgen": {"validity": {"send_lag_p99_max_ms": SEND_LAG_P99_MAX_MS}},
}


def copy_source_tree(destination: Path) -> Path:
    """The working tree as `pip install .` sees it (tracked and untracked files, not ignored
    ones), links kept as links, so that building never writes into the checkout."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the source tree")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source, target = REPO_ROOT / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def run(command: list, log: list[str], **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, **kwargs
    )
    log.append(f"{time.monotonic() - started:6.1f} s  {' '.join(map(str, command[:3]))} ...")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh environment's bin folder, the wheel, the timing log)."""
    log: list[str] = []
    root = tmp_path_factory.mktemp("install")
    source = copy_source_tree(root / "source")
    dist = root / "dist"
    build = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "-w", dist, source],
        log,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("servebench-*.whl")

    venv = root / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    created = run([base_python, "-m", "venv", "--without-pip", venv], log)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    install = run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index"]
        + ["--quiet", wheel],
        log,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # The dependencies: this environment's packages, after the fresh one's own.
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], log)
    Path(site.stdout.strip(), "test-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    yield venv / "bin", wheel, log
    print("\n".join(["timings:", *log]))


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """A working folder outside the checkout and an environment that does not point into it."""
    folder = tmp_path_factory.mktemp("elsewhere")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)}
    env.pop("VIRTUAL_ENV", None)
    return folder, env


def test_the_wheel_carries_the_repository_files(installed):
    _, wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, original in BUNDLED.items():
            assert name in names, f"{name} is not in the wheel"
            assert archive.read(name) == original.read_bytes(), f"{name} differs from {original}"
        for name in RUNTIME_MODULES:
            assert name in names, f"{name} is not in the wheel"


def test_the_installed_tool_runs_outside_the_checkout(installed, elsewhere):
    bin_dir, _, log = installed
    cwd, env = elsewhere
    where = run(
        [bin_dir / "python", "-c", "import json, servebench.config as c; print(json.dumps("
         "[c.__file__, str(c.DEFAULT_CONFIG_PATH), str(c.SCHEMA_PATH), str(c.BUNDLED_CORPUS)]))"],
        log,
        cwd=cwd,
        env=env,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    paths = [Path(path) for path in json.loads(where.stdout)]
    for path in paths:
        assert path.is_relative_to(bin_dir.parent), f"{path} is not in the installed package"
        assert path.exists()
    corpus = paths[3]

    version = run([bin_dir / "servebench", "--version"], log, cwd=cwd, env=env)
    assert version.stdout.strip() == f"servebench {__version__}", version.stderr

    port = free_port()
    server = subprocess.Popen(
        [bin_dir / "python", "-m", "servebench.loadgen.testserver", "--port", str(port)]
        + ["--require-header", HEADER]
        + SERVER_CPUS,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while http_get(url + "/ok", timeout_s=1.0)[0] != 401:
            assert time.monotonic() < deadline and server.poll() is None, "no test server"
            time.sleep(0.1)

        loadtest = run(
            [bin_dir / "servebench", "loadtest", "--host", url, "--endpoint", "/ok"]
            + ["--payloads", corpus, "--rate", "20", "--duration", "3", "--no-progress"]
            + ["--slo", "error_rate<=0.01", "--out", "loadtest", "-H", HEADER]
            + ["--max-send-lag-ms", str(SEND_LAG_P99_MAX_MS)]
            + LOADGEN_CPUS,
            log,
            cwd=cwd,
            env=env,
        )
        assert loadtest.returncode == 0, loadtest.stdout + loadtest.stderr
        summary = json.loads((cwd / "loadtest" / "summary.json").read_text())
        assert summary["valid"] and summary["counts"]["ok"] == summary["planned_requests"]
        assert "PASS  error_rate<=0.01" in loadtest.stdout

        fast = cwd / "fast.yaml"
        fast.write_text(json.dumps(FAST_CALIBRATION))  # JSON is YAML
        calibrate = run(
            [bin_dir / "servebench", "calibrate", "--host", url, "--endpoint", "/fifo/10"]
            + ["--payloads", corpus, "--slo-p99-ms", "100", "--out", "calibration"]
            + ["--configfile", fast, "-H", HEADER]
            + LOADGEN_CPUS,
            log,
            cwd=cwd,
            env=env,
        )
        assert calibrate.returncode == 0, calibrate.stdout + calibrate.stderr
        capacity = json.loads((cwd / "calibration" / "capacity.json").read_text())
        # /fifo/10 serves one request at a time for 10 ms: it answers at most 100 req/s.
        assert capacity["saturation_rps"] is not None, calibrate.stdout + calibrate.stderr
        assert 0 < capacity["saturation_rps"] <= 110, calibrate.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_installed_compare_writes_its_page(installed, elsewhere):
    """`servebench compare` outside the checkout: its HTML page needs the report's templates
    and style from the package."""
    bin_dir, _, log = installed
    cwd, env = elsewhere
    for name in ("before", "after"):
        build_results_tree(cwd / name, analysis_config(results_dir=cwd / name))
    done = run(
        [bin_dir / "servebench", "compare", "before", "after", "--out", "comparison"],
        log,
        cwd=cwd,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (cwd / "comparison" / "comparison.html").read_text(encoding="utf-8")
    assert "servebench comparison: after against before" in page
    assert (cwd / "comparison" / "comparison.csv").is_file()
