"""The experiment matrix and the calibration logic (pure functions; no server)."""

from __future__ import annotations

import numpy as np
import pytest

from servebench.arrivals import make_schedule
from servebench.config import apply_defaults, deep_merge, load_config
from servebench.jobs.calibrate import (
    Step,
    bracket,
    judge_step,
    keeps_up_at,
    pooled_p99_all_ms,
    slo_bracket,
)
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


def test_a_utilization_needs_the_reference_saturation():
    relative = _scenario(utilization=0.5, duration_s=10)
    assert relative.offered_rate_rps(40.0) == 20.0
    assert _scenario(rate_rps=0.5, duration_s=10).offered_rate_rps(None) == 0.5
    with pytest.raises(ValueError, match="saturation"):
        relative.offered_rate_rps(None)


CALIBRATION = CalibrationSettings(
    slo_p99_ms=200,
    achieved_rate_tolerance=0.05,
    max_error_rate=0.01,
    min_step_requests=100,
    slo_verdict_requests=100,
    min_step_duration_s=8,
    step_warmup_s=2,
    unloaded_requests=20,
    start_utilization=0.25,
    ramp_factor=2.0,
    bracket_precision=0.05,
    max_steps=30,
    slo_min_utilization=0.1,
)


def _summary(answered_rps, p99_all_ms, rejected=0, ok=100, offered_rps=10.0, valid=True):
    return RunSummary.from_dict(
        {
            "throughput_rps": answered_rps,
            "offered_rate_rps": offered_rps,
            "latency_all_p99_ms": p99_all_ms,
            "counts": {"ok": ok, "rejected": rejected, "failed": 0, "timeout": 0, "dropped": 0},
            "valid": valid,
            "invalid_reasons": [] if valid else ["send-lag p99 9 ms exceeds 5 ms"],
        }
    )


def test_a_step_keeps_up_within_tolerance_and_meets_the_slo_on_all_requests():
    def judge(summary, alive=True):
        return judge_step(summary, CALIBRATION, alive)[:2]

    assert judge(_summary(9.6, 150.0)) == (True, True)
    assert judge(_summary(9.4, 150.0)) == (False, False)  # answered < 95 % of offered
    assert judge(_summary(10.0, 250.0)) == (True, False)  # keeps up, misses the SLO
    assert judge(_summary(10.0, None)) == (True, False)  # the p99 is a failed request
    assert judge(_summary(10.0, 150.0, rejected=2, ok=98)) == (False, False)  # 2 % rejected
    assert judge(_summary(10.0, 150.0, valid=False)) == (False, False)  # generator off schedule
    assert judge(_summary(10.0, 150.0), alive=False) == (False, False)
    # Judged against what the seeded schedule really offered in the window.
    assert judge(_summary(8.0, 150.0, offered_rps=8.2)) == (True, True)
    reasons = judge_step(_summary(9.0, 150.0), CALIBRATION, True)[2]
    assert reasons == ["answered 9 of 10 req/s offered"]


def _step(rate, keeps_up, meets_slo, latencies_all_ms=None):
    return Step(0, "ramp", rate, RunSummary(), keeps_up, meets_slo, [], 1.0, False,
                latencies_all_ms)  # fmt: skip


def _slo_bracket(steps):
    return slo_bracket(steps, CALIBRATION.slo_p99_ms)


def test_a_bracket_needs_every_lower_rate_to_pass_and_every_step_at_a_rate():
    steps = [
        _step(2, True, True),
        _step(4, True, True),
        _step(8, True, False),
        _step(16, False, False),
    ]
    assert bracket(steps, keeps_up_at) == (8, 16)
    assert _slo_bracket(steps) == (4, 8)
    # A lucky pass above a failure does not count; a failed repeat at a rate fails the rate
    # (here the steps' requests are unknown: every step's own verdict).
    steps += [_step(6, True, False), _step(12, True, True), _step(4, True, False)]
    assert _slo_bracket(steps) == (2, 4)
    assert bracket([_step(2, False, False)], keeps_up_at) == (None, 2)
    # Without an SLO failure below it, the first rate that did not keep up bounds the bracket.
    assert _slo_bracket([_step(2, True, True), _step(4, False, False)]) == (2, 4)


def _latencies(p99_ms, n=1000):
    """n latencies with an exponential tail (as a queue's) whose p99 is p99_ms."""
    scale = p99_ms / np.log(100.0)
    return np.sort(-scale * np.log(1.0 - (np.arange(n) + 0.5) / n))


def _measured(rate, p99_ms, keeps_up=True):
    return _step(rate, keeps_up, keeps_up and p99_ms <= CALIBRATION.slo_p99_ms,
                 _latencies(p99_ms))  # fmt: skip


def test_the_slo_verdict_of_a_rate_pools_the_requests_of_its_steps():
    slo_ms = CALIBRATION.slo_p99_ms
    lucky, unlucky = _measured(4, 0.8 * slo_ms), _measured(4, 1.05 * slo_ms)
    assert pooled_p99_all_ms([lucky]) == pytest.approx(0.8 * slo_ms, rel=0.02)
    # One repeat a little over the SLO beside one well within it: together within it.
    assert _slo_bracket([lucky, unlucky]) == (4, None)
    assert _slo_bracket([_measured(2, 0.5 * slo_ms), lucky, unlucky]) == (4, None)
    # Both over: the rate fails; one step that did not keep up fails the rate whatever its p99.
    assert _slo_bracket([unlucky, _measured(4, 1.2 * slo_ms)]) == (None, 4)
    assert _slo_bracket([lucky, _measured(4, 0.5 * slo_ms, keeps_up=False)]) == (None, 4)
    # Failed requests count as infinitely slow in the pool too.
    failed = _step(4, True, False, np.sort(np.concatenate([_latencies(0.5 * slo_ms, 980),
                                                           [np.inf] * 40])))  # fmt: skip
    assert pooled_p99_all_ms([lucky, failed]) == np.inf
    assert _slo_bracket([lucky, failed]) == (None, 4)


def test_the_slo_answer_pools_adjacent_rates_whose_p99s_contradict_their_order():
    """The true p99 rises with the rate: a measured p99 above a higher rate's is noise, and
    the two rates are judged on their requests together (the case that failed the FIFO test
    in CI: a repeat a hair over the SLO at 142.7 req/s, with 149 and 155.6 req/s near it,
    moved the answer down to 115 req/s, 0.74 x the truth)."""
    slo_ms = CALIBRATION.slo_p99_ms
    low = _measured(2, 0.5 * slo_ms)
    # A noisy failure just over the SLO below a clear pass: pooled, both pass.
    steps = [low, _measured(4, 1.04 * slo_ms), _measured(5, 0.8 * slo_ms)]
    assert _slo_bracket(steps) == (5, None)
    assert _slo_bracket([*steps, _measured(6, 1.3 * slo_ms)]) == (5, 6)
    # A lucky pass above a clear failure: pooled, both fail.
    steps = [low, _measured(4, 1.5 * slo_ms), _measured(5, 0.8 * slo_ms)]
    assert _slo_bracket(steps) == (2, 4)
    # Pools chain: a violation created by a merge is resolved with the block below it.
    steps = [low, _measured(3, 0.95 * slo_ms), _measured(4, 1.1 * slo_ms),
             _measured(5, 0.6 * slo_ms)]  # fmt: skip
    assert pooled_p99_all_ms(steps[2:]) < 0.95 * slo_ms  # 4 and 5 pooled, below 3's p99
    assert pooled_p99_all_ms(steps[1:]) <= slo_ms
    assert _slo_bracket(steps) == (5, None)


def test_the_capacity_says_how_many_requests_its_slo_verdict_rests_on():
    from servebench.jobs.calibrate import SearchResult

    def result(requests_per_step):
        steps = []
        for rate, p99_ms in ((2, 50.0), (4, 100.0), (4, 120.0), (8, 400.0)):
            summary = _summary(rate, p99_ms, ok=requests_per_step, offered_rps=rate)
            keeps_up, meets_slo, reasons = judge_step(summary, CALIBRATION, True)
            steps.append(Step(len(steps), "slo", rate, summary, keeps_up, meets_slo, reasons, 1.0))
        return SearchResult(steps=steps, confirmed=True).answers(CALIBRATION)

    few, enough = result(100), result(400)
    assert few["capacity_rps"] == enough["capacity_rps"] == 4
    assert (few["capacity_requests"], enough["capacity_requests"]) == (200, 800)
    # A p99 from fewer than ~370 requests has no distribution-free 95 % interval.
    assert any("too few for a distribution-free 95% interval" in n for n in few["notes"])
    assert not any("too few" in note for note in enough["notes"])


def test_a_scenario_grows_only_as_long_as_its_seeded_schedule_needs():
    """At a rate too low for min_requests measured requests in the configured duration, the
    schedule grows to exactly what its seed needs; at a high rate it keeps its duration."""
    scenario = _scenario(utilization=0.5, duration_s=30)
    assert scenario.duration_for(50.0, 100, seed=3) == 30.0
    grown_s = scenario.duration_for(2.0, 100, seed=3)
    schedule = make_schedule(
        scenario.arrival, seed=3, rate_rps=2.0, cv=scenario.cv, duration_s=grown_s
    )
    assert np.sum(schedule.scheduled_s >= scenario.warmup_s) == 100
