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
