"""Statistics against known answers: interval coverage by simulation, the paired test against
scipy, Cliff's delta against brute force, Holm against its definition, verdicts on known
inputs."""

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

# --------------------------------------------------------------------------- intervals


def test_the_paired_ratio_interval_covers_the_true_ratio_at_3_repetitions():
    """2,000 simulated studies of 3 paired repetitions: each repetition's value of the
    reference and the variant share a repetition effect (the machine's drift, the schedule),
    and the variant is a true 0.6x; the nominal 95 % interval must cover 0.6 at least 90 % of
    the time (a percentile bootstrap over 3 repetitions covers about 75 %)."""
    rng = np.random.default_rng(20261129)
    true_ratio, covered, studies = 0.6, 0, 2000
    for _ in range(studies):
        repetition = rng.normal(0.0, 0.25, size=3)  # shared by the pair
        reference = 50.0 * np.exp(repetition + rng.normal(0.0, 0.05, size=3))
        variant = 50.0 * true_ratio * np.exp(repetition + rng.normal(0.0, 0.05, size=3))
        comparison = statistics.compare(dict(enumerate(variant)), dict(enumerate(reference)))
        low, high = comparison.interval(0.95)
        covered += low <= true_ratio <= high
        assert comparison.design == "paired"
    coverage = covered / studies
    # binomial sd at 0.95 with 2000 studies: 0.005
    assert 0.93 <= coverage <= 0.97, coverage


def test_the_t_interval_over_repetitions_covers_the_mean():
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(2000):
        low, high = statistics.t_interval(rng.normal(10.0, 2.0, size=3), 0.95)
        covered += low <= 10.0 <= high
    assert 0.93 <= covered / 2000 <= 0.97
    assert all(math.isnan(x) for x in statistics.t_interval([3.0], 0.95))


def test_paired_is_used_when_the_repetitions_match_and_welch_otherwise():
    paired = statistics.compare({0: 10.0, 1: 12.0, 2: 11.0}, {0: 20.0, 1: 24.0, 2: 22.0})
    assert paired.design == "paired" and paired.ratio == pytest.approx(0.5)
    assert paired.p_value == 0.0  # identical log ratios: exact
    assert paired.interval(0.95) == pytest.approx((0.5, 0.5))
    # against scipy's paired t-test on the logs
    v, r = [10.0, 13.0, 11.0], [20.0, 22.0, 23.0]
    ours = statistics.compare(dict(enumerate(v)), dict(enumerate(r)))
    reference = sps.ttest_rel(np.log(v), np.log(r))
    assert ours.p_value == pytest.approx(reference.pvalue)
    unpaired = statistics.compare({0: 10.0, 1: 12.0}, {2: 20.0, 3: 25.0, 4: 22.0})
    assert unpaired.design == "unpaired" and "Welch" in unpaired.test
    welch = sps.ttest_ind(np.log([10.0, 12.0]), np.log([20.0, 25.0, 22.0]), equal_var=False)
    assert unpaired.p_value == pytest.approx(welch.pvalue)
    # a metric that can be 0 is compared by differences
    rates = statistics.compare({0: 0.0, 1: 0.01, 2: 0.0}, {0: 0.02, 1: 0.03, 2: 0.02})
    assert not rates.on_log_scale and rates.difference == pytest.approx(-0.02)
    assert statistics.compare({0: 1.0}, {0: 2.0}).design == ""


def test_the_verdicts_interval_excludes_1_exactly_when_holm_rejects():
    rng = np.random.default_rng(3)
    for _ in range(300):
        p_values = rng.uniform(0.0, 0.2, size=6)
        adjusted = statistics.holm(p_values)
        for p, p_holm in zip(p_values, adjusted, strict=True):
            level = statistics.adjusted_level(0.05, p, p_holm)
            # a t-interval at `level` excludes the null iff p < 1 - level
            assert (p < 1 - level) == (p_holm < 0.05)


# --------------------------------------------------------------------------- Cliff's delta


def brute_force_delta(x, y):
    return float(np.sign(np.subtract.outer(x, y)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cliffs_delta_agrees_with_brute_force_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(3.0, 0.5, size=300)
    y = rng.lognormal(3.1, 0.5, size=250)
    for a, b in ((x, y), (np.round(x), np.round(y))):  # rounded: many ties
        assert statistics.cliffs_delta(a, b) == pytest.approx(brute_force_delta(a, b))


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


SETTINGS = settings.AnalysisSettings(seed=1)


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
    assert (latency_rows["p_value"] == 1.0).all()


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
    # the paired estimate: the geometric mean of the per-repetition ratios
    ratios = np.array([10.0, 10.4, 9.8]) / np.array([30.0, 31.0, 29.5])
    assert p99.loc["fast", "ratio"] == pytest.approx(np.exp(np.log(ratios).mean()))
    assert p99.loc["fast", "ci_low"] <= p99.loc["fast", "ratio"] <= p99.loc["fast", "ci_high"]
    assert p99.loc["fast", "design"] == "paired"
    # Holm never lowers a p-value, and works within a metric's family
    assert (table["p_holm"] >= table["p_value"] - 1e-15).all()
    family = table[table["metric"] == "latency_p99_ms"]
    np.testing.assert_allclose(family["p_holm"], statistics.holm(family["p_value"]))
    # the verdict's interval excludes 1, at the level it names
    assert p99.loc["fast", "adj_ci_high"] < 1.0 and "Holm-adjusted" in p99.loc["fast", "verdict"]


def test_one_repetition_is_not_tested_but_reported():
    runs = runs_frame({"baseline": [30.0], "optimized": [10.0]})
    table = tables.comparison_table(
        runs, {}, SETTINGS, "baseline", ["baseline", "optimized"], ["steady"]
    )
    row = table[table["metric"] == "latency_p50_ms"].iloc[0]
    assert row["verdict_class"] == "not tested"
    assert row["ratio"] == pytest.approx(1 / 3)
    assert math.isnan(row["ci_low"])
    assert "not tested" in row["verdict"]


def test_summary_excludes_invalid_runs():
    runs = runs_frame({"baseline": [10.0, 20.0, 1000.0]})
    runs.loc[2, ["valid", "status"]] = [False, "invalid"]
    summary = tables.summary_table(runs, SETTINGS, ["baseline"], ["steady"])
    row = summary.iloc[0]
    assert row["n_repetitions"] == 2 and row["n_excluded"] == 1
    assert row["latency_p99_ms"] == pytest.approx(15.0)
    # 2 repetitions: a wide t-interval (t = 12.7), cut at 0
    low, high = row["latency_p99_ms_ci_low"], row["latency_p99_ms_ci_high"]
    assert low == 0.0 and high == pytest.approx(15.0 + 12.706 * 5.0, rel=1e-3)


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
    # The paper's failure rate (every request not answered ok): a column of runs.csv, so the
    # summary and the comparisons have it (the first complete study showed it n/a throughout).
    assert metrics["failure_rate"] == pytest.approx(0.10)
    assert metrics["error_rate"] == pytest.approx(0.06)
    assert metrics["rejection_rate"] == pytest.approx(0.04)


def test_capacity_table_has_both_answers_and_their_ratios(tmp_path):
    from servebench.provenance import write_json

    for variant, saturation, capacity in (("baseline", 20.0, 8.0), ("optimized", 50.0, None)):
        folder = tmp_path / "calibration" / "local" / variant
        write_json(
            folder / "capacity.json",
            {
                "saturation_rps": saturation,
                "saturation_offered_rps": saturation * 1.02,
                "saturation_bracket_rps": [saturation * 1.01, saturation * 1.05],
                "capacity_rps": capacity,
                "capacity_bracket_rps": [capacity, capacity * 1.04] if capacity else [None, None],
                "capacity_confirmed": capacity is not None,
                "capacity_unattainable": None if capacity else "unattainable: unloaded p99 > SLO",
                "slo_p99_ms": 200,
                "steps_run": 9,
                "notes": [],
            },
        )
        pd.DataFrame({"offered_rate_rps": [10.0]}).to_csv(folder / "steps.csv", index=False)
    problems = []
    table = tables.capacity_table(
        tmp_path, "local", ["baseline", "optimized", "other"], "baseline", problems
    )
    rows = table.set_index("variant")
    assert rows.loc["optimized", "saturation_vs_reference"] == pytest.approx(2.5)
    assert rows.loc["optimized", "saturation_bracket_high_rps"] == pytest.approx(52.5)
    assert math.isnan(rows.loc["optimized", "capacity_rps"])
    assert "unattainable" in rows.loc["optimized", "capacity_unattainable"]
    assert rows.loc["baseline", "capacity_vs_reference"] == pytest.approx(1.0)
    assert "not calibrated" in rows.loc["other", "note"]
    assert any("other" in problem for problem in problems)
    ablation = tables.ablation_table(
        pd.DataFrame(columns=["target", "variant", "scenario", "repetition", "valid"]),
        table.assign(
            variant=table["variant"].replace({"other": "ablation-runtime"}),
            saturation_rps=table["saturation_rps"].fillna(30.0),
        ),
        SETTINGS,
        reference="baseline",
        optimized="optimized",
        all_variants=["baseline", "optimized", "ablation-runtime"],
        scenarios=["steady"],
    )
    runtime = ablation[ablation["metric"] == "saturation_rps"].set_index("level").loc["runtime"]
    assert runtime["share_of_total_gain"] == pytest.approx((30 - 20) / (50 - 20))
