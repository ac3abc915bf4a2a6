"""Statistics against known answers: bootstrap coverage, Mann-Whitney U and Cliff's delta
against scipy and brute force, Holm against its definition, and verdicts on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from servebench import settings
from servebench.analysis import results, statistics, tables
from servebench.matrix import RunSpec
from servebench.records import RunSummary

# --------------------------------------------------------------------------- bootstrap


def p90(values, axis):
    return np.percentile(values, 90, axis=axis)


def test_bootstrap_ci_covers_the_true_percentile_at_about_the_nominal_rate():
    """200 simulated experiments of 200 exponential draws: the 95% CI of the p90 should
    contain the true p90 (ln 10) in about 95% of them."""
    rng = np.random.default_rng(11)
    true_p90 = math.log(10.0)
    experiments = 200
    covered = 0
    for _ in range(experiments):
        sample = rng.exponential(1.0, size=200)
        low, high = statistics.bootstrap_ci(sample, p90, level=0.95, n_resamples=1000, rng=rng)
        covered += low <= true_p90 <= high
    coverage = covered / experiments
    # binomial sd at 0.95 with 200 experiments: 0.015; the percentile bootstrap of a quantile
    # undercovers slightly at this size
    assert 0.89 <= coverage <= 0.99, coverage


def test_bootstrap_ci_of_a_mean_over_repetitions_covers_at_about_the_nominal_rate():
    """Repetition-level means (the summary table's case) of a known lognormal law."""
    rng = np.random.default_rng(5)
    sigma = 0.3
    true_mean = 50.0 * math.exp(sigma**2 / 2)
    covered = 0
    for _ in range(200):
        repetitions = 50.0 * rng.lognormal(0.0, sigma, size=30)
        low, high = statistics.bootstrap_ci(repetitions, level=0.95, n_resamples=1000, rng=rng)
        covered += low <= true_mean <= high
    assert 0.89 <= covered / 200 <= 0.99, covered / 200


def test_bootstrap_ci_needs_two_values_and_is_seeded():
    assert all(math.isnan(x) for x in statistics.bootstrap_ci([3.0]))
    assert all(math.isnan(x) for x in statistics.bootstrap_ci([]))
    values = [1.0, 2.0, 4.0, 8.0]
    first = statistics.bootstrap_ci(values, rng=np.random.default_rng(1))
    again = statistics.bootstrap_ci(values, rng=np.random.default_rng(1))
    assert first == again
    assert 1.0 <= first[0] <= np.mean(values) <= first[1] <= 8.0


def test_paired_bootstrap_of_identical_groups_gives_ratio_one_exactly():
    values = np.array([10.0, 12.0, 11.0])
    result = statistics.two_sample_bootstrap(
        values,
        values.copy(),
        level=0.95,
        n_resamples=500,
        rng=np.random.default_rng(0),
        paired=True,
    )
    assert result["ratio_ci_low"] == result["ratio_ci_high"] == 1.0
    assert result["difference_ci_low"] == result["difference_ci_high"] == 0.0


# --------------------------------------------------------------------------- Mann-Whitney, Cliff


def brute_force_delta(x, y):
    return float(np.sign(np.subtract.outer(x, y)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mann_whitney_agrees_with_scipy_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(3.0, 0.5, size=300)
    y = rng.lognormal(3.1, 0.5, size=250)
    for a, b in ((x, y), (np.round(x), np.round(y))):  # rounded: many ties
        ours = statistics.mann_whitney(a, b)
        reference = sps.mannwhitneyu(
            a, b, alternative="two-sided", method="asymptotic", use_continuity=True
        )
        assert ours.u == pytest.approx(reference.statistic)
        assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
        assert ours.cliffs_delta == pytest.approx(brute_force_delta(a, b))


def test_cliffs_delta_hand_computed():
    # pairs (x, y): 3>1, 3>2, 3=3 | 2>1, 2=2, 2<3 | 1=1, 1<2, 1<3  -> (3 - 3) / 9 = 0
    assert statistics.cliffs_delta([1, 2, 3], [1, 2, 3]) == 0.0
    # every x above every y
    assert statistics.cliffs_delta([10, 11], [1, 2, 3]) == 1.0
    assert statistics.cliffs_delta([1, 2, 3], [10, 11]) == -1.0
    # x = [2, 4], y = [1, 3]: 2>1, 2<3, 4>1, 4>3 -> (3 - 1) / 4
    assert statistics.cliffs_delta([2, 4], [1, 3]) == pytest.approx(0.5)
    assert statistics.cliffs_magnitude(0.1) == "negligible"
    assert statistics.cliffs_magnitude(-0.2) == "small"
    assert statistics.cliffs_magnitude(0.4) == "medium"
    assert statistics.cliffs_magnitude(-0.9) == "large"


def test_identical_samples_give_no_difference():
    x = np.random.default_rng(3).exponential(10.0, size=500)
    test = statistics.mann_whitney(x, x.copy())
    assert test.p_value == 1.0
    assert test.cliffs_delta == 0.0
    assert test.u == pytest.approx(len(x) ** 2 / 2)
    assert (
        statistics.repetition_test(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))[0] == 1.0
    )
    assert statistics.repetition_test(np.array([0.0, 0.0]), np.array([0.0, 0.0]))[0] == 1.0


# --------------------------------------------------------------------------- Holm


def holm_by_definition(p, alpha):
    """Holm's procedure as stated: reject H_(1..k) where k is the first i with
    p_(i) > alpha / (m - i + 1) (1-based), minus one."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    rejected = np.zeros(m, dtype=bool)
    for rank, index in enumerate(order):
        if p[index] > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected


def test_holm_matches_the_textbook_example():
    adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("seed", range(5))
def test_holm_rejects_exactly_what_the_step_down_procedure_rejects(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.02, size=6), rng.uniform(0, 1, size=14)])
    adjusted = statistics.holm(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    for alpha in (0.01, 0.05, 0.1, 0.2):
        assert ((adjusted <= alpha) == holm_by_definition(p, alpha)).all()


def test_holm_ignores_missing_p_values():
    adjusted = statistics.holm([0.01, float("nan"), 0.04])
    assert math.isnan(adjusted[1])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)


# --------------------------------------------------------------------------- tables


def runs_frame(values_by_variant, scenario="steady", metrics=None):
    """A runs table with one row per repetition: every latency metric = the given value."""
    rows = []
    for variant, values in values_by_variant.items():
        for repetition, value in enumerate(values):
            row = {
                "target": "local",
                "variant": variant,
                "scenario": scenario,
                "repetition": repetition,
                "status": "valid",
                "valid": True,
                "n_ok": 100,
            }
            for metric in statistics.METRICS:
                row[metric.name] = value if metric.unit == "ms" else 0.0
            row["throughput_rps"] = 10.0
            rows.append(row)
    return pd.DataFrame(rows)


SETTINGS = settings.AnalysisSettings(bootstrap_resamples=500, seed=1)


def test_identical_inputs_give_no_difference_on_every_row():
    values = [20.0, 22.0, 21.0]
    runs = runs_frame({"baseline": values, "optimized": list(values)})
    latencies = np.random.default_rng(0).exponential(20.0, size=400)
    pooled = {
        ("local", variant, "steady"): {"latency": latencies, "service": latencies}
        for variant in ("baseline", "optimized")
    }
    table = tables.comparison_table(
        runs, pooled, SETTINGS, "baseline", ["baseline", "optimized"], ["steady"]
    )
    assert len(table) == len(statistics.METRICS)
    assert set(table["verdict_class"]) == {"no difference"}
    assert table["verdict"].str.startswith("no difference").all()
    latency_rows = table[table["unit"] == "ms"]
    assert (latency_rows["ratio"] == 1.0).all()
    assert (latency_rows["difference"] == 0.0).all()
    assert (latency_rows["cliffs_delta"] == 0.0).all()
    assert (latency_rows["mwu_p_value"] == 1.0).all()


def test_a_clear_speedup_is_better_and_a_slowdown_worse():
    runs = runs_frame(
        {"baseline": [30.0, 31.0, 29.5], "fast": [10.0, 10.4, 9.8], "slow": [60.0, 61.0, 59.0]}
    )
    table = tables.comparison_table(
        runs, {}, SETTINGS, "baseline", ["baseline", "fast", "slow"], ["steady"]
    )
    p99 = table[table["metric"] == "latency_p99_ms"].set_index("variant")
    assert p99.loc["fast", "verdict_class"] == "better"
    assert "fast faster" in p99.loc["fast", "verdict"]
    assert p99.loc["slow", "verdict_class"] == "worse"
    assert p99.loc["fast", "ratio"] == pytest.approx(
        np.mean([10.0, 10.4, 9.8]) / np.mean([30.0, 31.0, 29.5])
    )
    assert (
        p99.loc["fast", "ratio_ci_low"]
        <= p99.loc["fast", "ratio"]
        <= p99.loc["fast", "ratio_ci_high"]
    )
    assert p99.loc["fast", "bootstrap"] == "paired"
    # Holm never lowers a p-value
    assert (table["rep_p_holm"] >= table["rep_p_value"] - 1e-15).all()


def test_one_repetition_is_not_tested_but_reported():
    runs = runs_frame({"baseline": [30.0], "optimized": [10.0]})
    table = tables.comparison_table(
        runs, {}, SETTINGS, "baseline", ["baseline", "optimized"], ["steady"]
    )
    row = table[table["metric"] == "latency_p50_ms"].iloc[0]
    assert row["verdict_class"] == "not tested"
    assert row["ratio"] == pytest.approx(1 / 3)
    assert math.isnan(row["ratio_ci_low"])
    assert "not tested" in row["verdict"]


def test_summary_excludes_invalid_runs():
    runs = runs_frame({"baseline": [10.0, 20.0, 1000.0]})
    runs.loc[2, ["valid", "status"]] = [False, "invalid"]
    summary = tables.summary_table(runs, SETTINGS, ["baseline"], ["steady"])
    row = summary.iloc[0]
    assert row["n_repetitions"] == 2 and row["n_excluded"] == 1
    assert row["latency_p99_ms"] == pytest.approx(15.0)
    assert 10.0 <= row["latency_p99_ms_ci_low"] <= row["latency_p99_ms_ci_high"] <= 20.0


def test_run_status_from_the_files(tmp_path):
    from servebench.provenance import write_json

    spec = RunSpec("local", "baseline", "steady", 0)
    assert results.load_run(spec, tmp_path).status == "missing"
    folder = spec.path(tmp_path)
    write_json(folder / "meta.json", {"valid": False, "invalid_reasons": ["run failed: boom"]})
    record = results.load_run(spec, tmp_path)
    assert record.status == "failed" and "run failed: boom" in record.reasons
    write_json(folder / "summary.json", {"valid": False, "invalid_reasons": ["too slow"]})
    record = results.load_run(spec, tmp_path)
    assert record.status == "invalid" and record.reasons == ["too slow"]
    # Only a finished job counts: a summary.json without the completion marker does not.
    (folder / "meta.json").unlink()
    write_json(folder / "summary.json", {"valid": True, "invalid_reasons": [], "counts": {}})
    record = results.load_run(spec, tmp_path)
    assert record.status == "failed" and "completion marker" in record.reasons[0]
    write_json(folder / "meta.json", {"valid": True})
    write_json(folder / "summary.json", {"valid": True, "invalid_reasons": [], "counts": {}})
    record = results.load_run(spec, tmp_path)
    assert record.status == "valid" and "requests.parquet" in record.missing_files
    (folder / "summary.json").write_text("{not json")
    assert results.load_run(spec, tmp_path).status == "failed"


def test_run_metrics_count_errors_and_rejections_apart():
    metrics = results.run_metrics(
        RunSummary(counts={"ok": 90, "rejected": 4, "failed": 3, "timeout": 2, "dropped": 1})
    )
    assert metrics["n_measured"] == 100
    assert metrics["error_rate"] == pytest.approx(0.06)
    assert metrics["rejection_rate"] == pytest.approx(0.04)


def test_capacity_table_speedup_and_lower_bound(tmp_path):
    from servebench.provenance import write_json

    for variant, capacity, bound in (("baseline", 20.0, False), ("optimized", 50.0, True)):
        folder = tmp_path / "calibration" / "local" / variant
        write_json(
            folder / "capacity.json",
            {"capacity_rps": capacity, "capacity_is_lower_bound": bound, "slo_p99_ms": 200},
        )
        pd.DataFrame(
            {
                # the step above capacity failed; the top sustained one fell short of its rate
                "offered_rate_rps": [10.0, capacity, capacity * 1.4],
                "achieved_rate_rps": [10.0, capacity * 0.9, capacity * 1.1],
                "sustained": [True, True, False],
            }
        ).to_csv(folder / "steps.csv", index=False)
    problems = []
    table = tables.capacity_table(
        tmp_path, "local", ["baseline", "optimized", "other"], "baseline", problems
    )
    rows = table.set_index("variant")
    assert rows.loc["optimized", "speedup_vs_reference"] == pytest.approx(2.5)
    assert rows.loc["optimized", "capacity_achieved_rps"] == pytest.approx(45.0)
    assert rows.loc["optimized", "max_achieved_rate_rps"] == pytest.approx(55.0)
    assert rows.loc["optimized", "capacity_is_lower_bound"] is True
    assert "not calibrated" in rows.loc["other", "note"]
    assert any("other" in problem for problem in problems)
    ablation = tables.ablation_table(
        pd.DataFrame(columns=["target", "variant", "scenario", "repetition", "valid"]),
        table.assign(
            variant=table["variant"].replace({"other": "ablation-runtime"}),
            capacity_rps=table["capacity_rps"].fillna(30.0),
        ),
        SETTINGS,
        reference="baseline",
        optimized="optimized",
        all_variants=["baseline", "optimized", "ablation-runtime"],
        scenarios=["steady"],
    )
    runtime = ablation.set_index("level").loc["runtime"]
    assert runtime["share_of_total_gain"] == pytest.approx((30 - 20) / (50 - 20))
    assert "optimized is only a lower bound" in runtime["note"]
