"""A study that fails says so: the status names each cause, the report carries the banner."""

from __future__ import annotations

import pandas as pd

from servebench.analysis.status import study_status
from servebench.config import load_config


def _runs(valid_by_cell):
    rows = []
    for (scenario, variant), flags in valid_by_cell.items():
        for repetition, valid in enumerate(flags):
            rows.append(
                {
                    "scenario": scenario,
                    "variant": variant,
                    "repetition": repetition,
                    "valid": valid,
                    "invalid_reasons": "" if valid else "send-lag p99 9 ms exceeds 5 ms",
                }
            )
    return pd.DataFrame(rows)


def _capacity(saturation_by_variant):
    return pd.DataFrame(
        [
            {
                "variant": variant,
                "saturation_rps": value,
                "note": "" if value else "no step kept up",
            }
            for variant, value in saturation_by_variant.items()
        ]
    )


def test_a_complete_study_has_no_problem():
    config = load_config()
    tables = {
        "runs": _runs({("steady", "baseline"): [True] * 3, ("steady", "optimized"): [True] * 3}),
        "capacity": _capacity({"baseline": 10.0, "optimized": 40.0}),
    }
    status = study_status(config, tables, pd.DataFrame({"valid": [True], "problems": [""]}))
    assert status["ok"] and status["problems"] == []
    assert (status["runs"], status["valid_runs"]) == (6, 6)


def test_every_cause_is_one_line_with_its_reason():
    config = load_config()
    tables = {
        "runs": _runs(
            {("steady", "baseline"): [True, False, False], ("steady", "optimized"): [True] * 3}
        ),
        "capacity": _capacity({"baseline": None, "optimized": 40.0}),
    }
    resilience = pd.DataFrame({"valid": [False], "problems": ["the fault never fired"]})
    status = study_status(config, tables, resilience)
    assert not status["ok"] and len(status["problems"]) == 3
    calibration, runs, faults = status["problems"]
    assert "calibration of baseline" in calibration and "every scenario's rate" in calibration
    assert "scenario steady, variant baseline: 1 of 3 runs valid" in runs
    assert "send-lag p99 9 ms exceeds 5 ms (2x)" in runs
    assert "no valid resilience run of 1" in faults and "never fired" in faults


def test_one_planned_repetition_is_not_a_problem():
    config = load_config()
    tables = {
        "runs": _runs({("steady", "baseline"): [True], ("steady", "optimized"): [True]}),
        "capacity": _capacity({"baseline": 10.0, "optimized": 40.0}),
    }
    assert study_status(config, tables, None)["problems"] == []


def test_no_valid_run_at_all_is_one_line():
    config = load_config()
    tables = {
        "runs": _runs({("steady", "baseline"): [False] * 3}),
        "capacity": _capacity({"baseline": 10.0}),
    }
    problems = study_status(config, tables, None)["problems"]
    assert problems == ["no valid run of 3: send-lag p99 9 ms exceeds 5 ms (3x)"]
