"""The experiment matrix and the calibration logic (pure functions; no server)."""

from __future__ import annotations

import pytest

from servebench.config import apply_defaults, deep_merge, load_config
from servebench.jobs.calibrate import calibration_rates_rps, capacity_from_steps, step_row
from servebench.matrix import abba_order, derived_seed, run_matrix, run_seed
from servebench.records import RunSummary
from servebench.settings import CalibrationSettings, ScenarioSettings


def test_matrix_covers_every_run_once_in_abba_order():
    config = load_config()
    matrix = run_matrix(config)
    variants = config["experiment"]["variants"]
    expected = sum(
        config["scenarios"][name]["repetitions"] * len(variants)
        for name in config["experiment"]["scenarios"]
    )
    assert len(matrix) == expected == len(set(matrix))
    steady = [spec for spec in matrix if spec.scenario == "steady"]
    assert [spec.variant for spec in steady] == [
        "baseline",
        "optimized",
        "optimized",
        "baseline",
        "baseline",
        "optimized",
    ]
    assert abba_order(["a", "b", "c"], 1) == ["c", "b", "a"]


def test_every_variant_of_a_repetition_gets_the_same_seed_and_repetitions_differ():
    config = load_config()
    seeds = {}
    for spec in run_matrix(config):
        seeds.setdefault((spec.scenario, spec.repetition), set()).add(
            run_seed(config, spec.scenario, spec.repetition)
        )
    assert all(len(values) == 1 for values in seeds.values())
    assert len({next(iter(values)) for values in seeds.values()}) == len(seeds)


def test_adding_a_variant_keeps_the_existing_runs_and_seeds():
    config = load_config()
    extra = deep_merge(
        config,
        {
            "variants": {"onnx-only": {"runtime": "onnx"}},
            "experiment": {"variants": ["baseline", "optimized", "onnx-only"]},
        },
    )
    before, after = set(run_matrix(config)), set(run_matrix(extra))
    assert before < after
    assert {spec.variant for spec in after - before} == {"onnx-only"}
    assert run_seed(config, "bursty", 2) == run_seed(extra, "bursty", 2)


def test_derived_seed_is_stable():
    # A fixed value: a seed derivation must never change between versions or machines.
    assert derived_seed(1, "a", 2) == derived_seed(1, "a", 2) != derived_seed(1, "a", 3)
    assert 0 <= derived_seed(20261129, "scenario", "steady", "rep", 0) < 2**31


def _scenario(**given):
    config = deep_merge(load_config(), {"scenarios": {"x": {"arrival": "exponential", **given}}})
    apply_defaults(config)
    return ScenarioSettings.of(config, "x")


def test_relative_rate_needs_a_capacity():
    relative = _scenario(rate_of_baseline_capacity=0.5, duration_s=10)
    assert relative.offered_rate_rps(40.0) == 20.0
    assert _scenario(rate_rps=0.5, duration_s=10).offered_rate_rps(None) == 0.5
    with pytest.raises(ValueError, match="capacity"):
        relative.offered_rate_rps(None)


CALIBRATION = CalibrationSettings(
    start_rate_rps=2.0,
    rate_factor=1.5,
    max_steps=4,
    step_duration_s=10,
    achieved_rate_tolerance=0.05,
    slo_p99_ms=200,
)


def _summary(throughput_rps, p99_ms, rejected=0, ok=100, offered_rps=None):
    return RunSummary.from_dict(
        {
            "throughput_rps": throughput_rps,
            "offered_rate_rps": offered_rps,
            "latency_p50_ms": p99_ms / 2 if p99_ms else None,
            "latency_p99_ms": p99_ms,
            "counts": {"ok": ok, "rejected": rejected, "failed": 0, "timeout": 0, "dropped": 0},
            "valid": True,
        }
    )


def test_ramp_rates():
    assert calibration_rates_rps(CALIBRATION) == [2.0, 3.0, 4.5, 6.75]


def test_step_is_sustained_only_within_rate_tolerance_and_slo():
    assert step_row(10.0, _summary(9.6, 150.0), CALIBRATION)["sustained"]
    assert not step_row(10.0, _summary(9.4, 150.0), CALIBRATION)["sustained"]
    assert not step_row(10.0, _summary(10.0, 250.0), CALIBRATION)["sustained"]
    assert not step_row(10.0, _summary(0.0, None, ok=0), CALIBRATION)["sustained"]
    # Judged against what the seeded schedule really offered in the window.
    assert step_row(10.0, _summary(8.0, 150.0, offered_rps=8.2), CALIBRATION)["sustained"]
    assert not step_row(10.0, _summary(10.0, 150.0, offered_rps=11.0), CALIBRATION)["sustained"]
    row = step_row(10.0, _summary(5.0, 150.0, rejected=50, ok=50), CALIBRATION)
    assert row["rejection_rate"] == 0.5


def test_capacity_is_the_highest_sustained_rate():
    steps = [
        step_row(rate, _summary(rate, p99), CALIBRATION)
        for rate, p99 in [(2.0, 50), (3.0, 80), (4.5, 260), (6.75, 190)]
    ]
    assert capacity_from_steps(steps) == 6.75
    assert capacity_from_steps(steps[2:3]) is None
