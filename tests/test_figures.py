"""Figure helpers on known inputs: colours, binning, BentoML's batch-size histogram, the
interarrival data, and figures that must still be written when their data is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servebench.analysis import figures


def test_variant_colours_follow_the_config_order_and_never_change():
    colors = figures.variant_colors(["baseline", "optimized", "ablation-runtime"])
    again = figures.variant_colors(["baseline", "optimized", "ablation-runtime", "new-variant"])
    assert colors["baseline"] == again["baseline"] == figures.PALETTE[0]
    assert colors["optimized"] == again["optimized"] == figures.PALETTE[1]
    assert len(set(again.values())) == 4


def test_rate_and_p99_over_time_counts_by_bin():
    # 10 requests a second for 4 s, each answered after 100 ms; the ones of second 2 fail
    scheduled = np.arange(40) / 10.0
    requests = pd.DataFrame(
        {
            "scheduled_s": scheduled,
            "done_s": scheduled + 0.1,
            "latency_ms": np.full(40, 100.0),
            "outcome": np.where((scheduled >= 2) & (scheduled < 3), "failed", "ok"),
        }
    )
    starts, offered, throughput, p99 = figures.rate_and_p99_over_time(requests, 1.0)
    assert list(starts[:4]) == [0.0, 1.0, 2.0, 3.0]
    assert list(offered[:4]) == [10, 10, 10, 10]
    assert throughput[2] <= 1  # only the answer of 1.9 s (done at 2.0 s) lands in bin 2
    assert np.isnan(p99[2]) and p99[0] == pytest.approx(100.0)


def test_bin_width_is_about_sixty_bins_of_a_round_size():
    assert figures._bin_width_s(6) == 1.0
    assert figures._bin_width_s(60) == 1.0
    assert figures._bin_width_s(300) == 5.0
    assert figures._bin_width_s(3600) == 60.0


def metric_rows(elapsed, sums, counts, workers=("1",), histogram=figures.BATCH_SIZE_HISTOGRAMS[0]):
    rows = []
    for second, total, count in zip(elapsed, sums, counts, strict=True):
        for worker in workers:
            labels = f"method_name=classify_batch;worker_index={worker}"
            rows += [
                (second, f"{histogram}_sum", labels, total),
                (second, f"{histogram}_count", labels, count),
                (second, f"{histogram}_bucket", labels, count),
            ]
    return pd.DataFrame(rows, columns=["elapsed_s", "metric", "labels", "value"])


@pytest.mark.parametrize("histogram", figures.BATCH_SIZE_HISTOGRAMS)
def test_batch_size_is_the_ratio_of_histogram_increments(histogram):
    # cumulative: 0 -> 8 requests in 2 batches -> 8 (idle) -> 20 requests in 3 more batches
    metrics = metric_rows(
        [0, 1, 2, 3], [0, 8, 8, 20], [0, 2, 2, 5], workers=("1", "2"), histogram=histogram
    )
    batches = figures.batch_size_over_time(metrics)
    assert list(batches["elapsed_s"]) == [1, 2, 3]
    assert batches["mean_batch_size"].iloc[0] == pytest.approx(4.0)
    assert np.isnan(batches["mean_batch_size"].iloc[1])  # no batch in that second
    assert batches["mean_batch_size"].iloc[2] == pytest.approx(4.0)
    assert batches["batches"].iloc[2] == 6  # both workers summed


def test_no_batching_metrics_give_an_empty_series():
    other = pd.DataFrame(
        [(0, "bentoml_service_request_in_progress", "", 1.0)],
        columns=["elapsed_s", "metric", "labels", "value"],
    )
    assert figures.batch_size_over_time(other).empty
    assert figures.batch_size_over_time(None).empty


def test_figures_without_data_are_written_as_placeholders(tmp_path):
    paths = figures.latency_cdf({}, "steady", {}, tmp_path / "cdf")
    assert [p.name for p in paths] == ["cdf.png", "cdf.pdf"]
    assert all(p.stat().st_size > 500 for p in paths)
    figures.latency_throughput({"baseline": (None, None)}, {}, tmp_path / "lt")
    figures.interarrivals({"steady": None}, tmp_path / "ia")
    figures.token_lengths(None, None, tmp_path / "tok")
    assert (tmp_path / "lt.png").is_file() and (tmp_path / "tok.pdf").is_file()


def test_interarrival_figure_with_the_target_density(tmp_path):
    rng = np.random.default_rng(0)
    shape, rate = 4.0, 20.0
    gaps = rng.gamma(shape, 1.0 / (shape * rate), size=2000)
    data = figures.InterarrivalData(
        gaps_s=gaps,
        rate_rps=rate,
        shape=shape,
        target_cv=0.5,
        realized_cv=float(gaps.std() / gaps.mean()),
        ks_pvalues=[0.4],
        resolution_ms=1.0,
        n_runs=1,
    )
    paths = figures.interarrivals({"steady": data, "bursty": None}, tmp_path / "ia")
    assert all(p.is_file() for p in paths)


def test_resilience_hook_draws_fault_windows(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    scheduled = np.arange(0, 30, 0.1)
    outcome = np.where((scheduled > 10) & (scheduled < 15), "failed", "ok")
    pd.DataFrame(
        {
            "scheduled_s": scheduled,
            "done_s": scheduled + 0.05,
            "latency_ms": 50.0,
            "outcome": outcome,
        }
    ).to_parquet(run / "requests.parquet")
    (run / "faults.json").write_text('{"faults": [{"kind": "kill", "start_s": 10, "end_s": 15}]}')
    assert figures.read_faults(run) == [{"kind": "kill", "start_s": 10, "end_s": 15}]
    paths = figures.resilience_timeline([run], tmp_path / "resilience")
    assert all(p.is_file() for p in paths)


def test_the_tuning_figure_draws_the_chosen_configuration_when_the_slo_is_unattainable(tmp_path):
    """With the SLO met at no rate, the chosen configuration has no capacity: it is drawn at 0
    and starred; the tie's loser at the common rate it failed; a configuration only screened
    (no p50 at the common rate) is not drawn."""
    table = pd.DataFrame(
        {
            "trial": ["t01", "t00", "t02"],
            "outcome": ["chosen", "lost", "screened"],
            "common_p50_ms": [74.4, 91.9, np.nan],
            "common_rate_rps": [6.6, 6.6, np.nan],
            "capacity_rps": [np.nan, np.nan, np.nan],
            "capacity_below_rps": [np.nan, 6.6, np.nan],
            "pareto": [False, False, False],
        }
    )
    points = figures.tuning_points(table).set_index("trial")
    assert list(points.index) == ["t01", "t00"]
    assert points.loc["t01", "kind"] == "unattainable" and points.loc["t01", "y_rps"] == 0.0
    assert points.loc["t01", "chosen"] and not points.loc["t00", "chosen"]
    assert points.loc["t00", "kind"] == "lost" and points.loc["t00", "y_rps"] == 6.6
    assert all(path.is_file() for path in figures.tuning(table, tmp_path / "tuning"))
