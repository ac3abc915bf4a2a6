"""The one CPU-list parser shared by the server driver and the load generator."""

import os

import pytest

from servebench import cpus
from servebench.loadgen import runner


@pytest.mark.parametrize(
    ("text", "cores"), [("0", [0]), ("1,0", [0, 1]), ("0-2", [0, 1, 2]), ("3, 0-1,", [0, 1, 3])]
)
def test_parse_cpus(text, cores):
    assert cpus.parse_cpus(text) == cores
    assert runner.parse_cpus(text) == cores


@pytest.mark.parametrize("text", ["one", "2-1", "-1", ",", "1-x"])
def test_bad_lists_get_each_callers_error_type(text):
    with pytest.raises(ValueError, match="bad CPU list"):
        cpus.parse_cpus(text)
    with pytest.raises(runner.LoadTestError, match="--cpus: bad CPU list"):
        runner.parse_cpus(text)


def test_unavailable_cores_are_named():
    missing = max(os.sched_getaffinity(0)) + 64
    with pytest.raises(ValueError, match=str(missing)):
        cpus.check_cpus([missing])
    with pytest.raises(runner.LoadTestError, match=str(missing)):
        runner._check_cpus([missing])


# ------------------------------------------------------------------ cpus: auto (the default)


@pytest.mark.parametrize(
    ("server", "loadgen", "usable", "expected"),
    [
        ("auto", "auto", [0, 1], ([0], [1])),  # this 2-core machine: the study's pinning
        ("auto", "auto", [0, 1, 2, 3], ([0, 1, 2], [3])),
        ("auto", "auto", [2, 5], ([2], [5])),  # a cpuset that does not start at 0
        ([1], "auto", [0, 1], ([1], [0])),  # the generator avoids the server's listed cores
        ("auto", [0], [0, 1, 2], ([1, 2], [0])),
        ([0, 1], [2, 3], [0, 1, 2, 3], ([0, 1], [2, 3])),
    ],
)
def test_auto_gives_the_server_every_core_but_the_generators(server, loadgen, usable, expected):
    assert cpus.assign_cpus(server, loadgen, usable) == expected
    assert cpus.cpu_problems(server, loadgen, usable) == []


@pytest.mark.parametrize(
    ("server", "loadgen", "usable", "message"),
    [
        ([0], [0], [0, 1], "share cores [0]"),
        ("auto", [7], [0, 1], "'cpus.loadgen': cores [7] are not available"),
        ([0, 9], "auto", [0, 1], "'cpus.server': cores [9] are not available"),
        ("auto", "auto", [0], "'cpus.server': auto leaves no core"),
        ("auto", [0, 1], [0, 1], "'cpus.server': auto leaves no core"),
    ],
)
def test_cores_that_do_not_fit_the_machine_are_named(server, loadgen, usable, message):
    problems = cpus.cpu_problems(server, loadgen, usable)
    assert len(problems) == 1 and message in problems[0], problems


def test_without_a_server_here_only_the_generators_cores_count():
    assert cpus.cpu_problems("auto", "auto", [0], server_runs_here=False) == []
    assert cpus.cpu_problems([0], [0], [0, 1], server_runs_here=False) == []
    assert cpus.cpu_problems([5], [7], [0, 1], server_runs_here=False) != []


def test_every_reader_of_the_config_gets_resolved_lists(monkeypatch):
    from servebench import config as config_module
    from servebench.settings import LoadgenSettings, deploy_target

    monkeypatch.setattr(config_module, "usable_cpus", lambda: [0, 1, 2, 3])
    loaded = config_module.load_config()
    assert loaded["cpus"] == {"server": [0, 1, 2], "loadgen": [3]}
    assert LoadgenSettings.of(loaded).cpus == (3,)
    assert deploy_target(loaded).cpus == (0, 1, 2)
    assert LoadgenSettings.with_defaults().cpus == (3,)

    monkeypatch.setattr(config_module, "usable_cpus", lambda: [0])
    raw = config_module.load_yaml(config_module.DEFAULT_CONFIG_PATH)
    problems = config_module.config_errors(raw)
    assert any("'cpus.server': auto leaves no core" in line for line in problems), problems
    # A command that pins no server here (servebench loadtest, calibrate) runs on one core.
    assert config_module.config_errors(raw, server_here=False) == []
    assert config_module.load_config(server_here=False)["cpus"]["loadgen"] == [0]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable cores")
def test_auto_follows_the_real_affinity_of_the_process():
    """Under `taskset -c <one core>`, auto leaves the server nothing: a clear error."""
    import subprocess
    import sys

    core = max(os.sched_getaffinity(0))
    code = (
        f"import os; os.sched_setaffinity(0, {{{core}}})\n"
        "from servebench.config import DEFAULT_CONFIG_PATH, config_errors, load_yaml\n"
        "print(config_errors(load_yaml(DEFAULT_CONFIG_PATH)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"may use only [{core}]" in result.stdout
