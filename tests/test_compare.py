"""`servebench compare`: two studies' results folders in the real file formats (written with the
generator's own code by test_report's helpers), one of them known to be faster."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest
import test_report
from test_report import analysis_config, build_results_tree

from servebench.analysis.compare import (
    CompareError,
    compare_studies,
    read_study,
    write_comparison,
)
from servebench.report.compare import render_comparison
from servebench.settings import AnalysisSettings

# B's service times, as a share of A's: B is known to be faster.
B_SPEEDUP = 0.6
SETTINGS = AnalysisSettings(ci_level=0.95, alpha=0.05)
HEADLINE = ("latency_p50_ms", "latency_p99_ms")


def _tree(path, monkeypatch, *, scale=1.0, seed=None):
    config = analysis_config(results_dir=path)
    if seed is not None:
        config["seed"] = seed
    with monkeypatch.context() as patch:
        for variant, median in list(test_report.SERVICE_MEDIAN_MS.items()):
            patch.setitem(test_report.SERVICE_MEDIAN_MS, variant, median * scale)
        return build_results_tree(path, config)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A (reference), B (faster, same seeds), C (faster, another master seed)."""
    monkeypatch = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("studies")
    try:
        a = _tree(base / "before", monkeypatch)
        b = _tree(base / "after", monkeypatch, scale=B_SPEEDUP)
        c = _tree(base / "other-seed", monkeypatch, scale=B_SPEEDUP, seed=12345)
    finally:
        monkeypatch.undo()
    return a, b, c


def _compare(a, b, names=("before", "after")):
    return compare_studies(read_study(a, names[0]), read_study(b, names[1]), SETTINGS)


def test_same_seeds_are_paired_and_the_faster_study_wins(trees, tmp_path):
    a, b, _ = trees
    result = _compare(a, b)
    table = result.comparison
    # Every variant and scenario of the tiny profile, every metric, B against A.
    assert set(table["variant"]) == {"baseline", "optimized"}
    assert set(table["scenario"]) == {"steady", "bursty"}
    assert set(table["study"]) == {"after"} and set(table["reference_study"]) == {"before"}
    latency = table[table["metric"].isin(HEADLINE)]
    assert (latency["design"] == "paired").all()
    assert latency["test"].str.startswith("paired t on log ratios").all()
    assert (latency["n_pairs"] == 3).all()
    assert (latency["verdict_class"] == "better").all(), latency[["verdict"]].to_string()
    assert latency["verdict"].str.startswith("after faster").all()
    p50 = latency[latency["metric"] == "latency_p50_ms"]
    assert p50["ratio"].between(B_SPEEDUP - 0.1, B_SPEEDUP + 0.1).all(), p50["ratio"]
    # Holm within each metric's family: 4 (variant, scenario) rows per metric.
    for _, family in table.groupby("metric"):
        assert len(family) == 4
        tested = family[family["p_value"].notna()]
        assert (tested["p_holm"] >= tested["p_value"] - 1e-15).all()

    paths = write_comparison(result, tmp_path)
    page = render_comparison(result, tmp_path)
    for name in ("comparison", "summary", "runs", "unmatched", "comparison.png", "comparison.pdf"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    written = pd.read_csv(tmp_path / "comparison.csv")
    assert len(written) == len(table)
    assert set(pd.read_csv(tmp_path / "summary.csv")["study"]) == {"before", "after"}
    html = page.read_text(encoding="utf-8")
    assert "servebench comparison: after against before" in html
    assert "data:image/png;base64," in html
    assert html.count('<li class="better">after faster') >= 4
    assert "paired t on log ratios" in html


def test_different_seeds_are_compared_unpaired_with_welch(trees):
    a, _, c = trees
    result = _compare(a, c, ("before", "other-seed"))
    latency = result.comparison[result.comparison["metric"].isin(HEADLINE)]
    assert (latency["design"] == "unpaired").all()
    assert latency["test"].str.startswith("Welch t on log ratios").all()
    assert (latency["n_pairs"] == 0).all()
    assert (latency["verdict_class"] == "better").all(), latency[["verdict"]].to_string()


def test_the_same_seeds_at_another_rate_are_not_paired(trees, tmp_path):
    """Same seeds, another offered rate (a study calibrated to another capacity): another
    schedule, so the runs are compared unpaired."""
    a, b, _ = trees
    other_rate = tmp_path / "other-rate"
    shutil.copytree(b, other_rate)
    for meta_path in (other_rate / "runs").rglob("meta.json"):
        meta = json.loads(meta_path.read_text())
        meta["rate_rps"] *= 1.5
        meta_path.write_text(json.dumps(meta))
    result = _compare(a, other_rate, ("before", "other-rate"))
    latency = result.comparison[result.comparison["metric"].isin(HEADLINE)]
    assert (latency["design"] == "unpaired").all(), latency[["design", "test"]]
    assert (latency["n_pairs"] == 0).all()


def test_a_study_against_itself_shows_no_difference(trees):
    a, _, _ = trees
    result = _compare(a, a, ("A", "B"))
    assert (result.comparison["verdict_class"].isin(["no difference", "not tested"])).all()
    assert (
        result.comparison.loc[result.comparison["metric"] == "latency_p99_ms", "ratio"] == 1
    ).all()


def test_runs_of_one_study_only_are_listed(trees, tmp_path):
    a, b, _ = trees
    partial = tmp_path / "partial"
    shutil.copytree(b / "runs", partial / "runs")
    shutil.rmtree(partial / "runs" / "local" / "optimized")
    result = _compare(a, partial, ("before", "partial"))
    assert set(result.comparison["variant"]) == {"baseline"}
    assert set(result.unmatched["variant"]) == {"optimized"}
    assert set(result.unmatched["study"]) == {"before"}


def test_cli_writes_the_page_and_rejects_a_folder_without_runs(trees, tmp_path, servebench_exe):
    a, b, _ = trees
    out = tmp_path / "cmp"
    done = subprocess.run(
        [servebench_exe, "compare", str(a), str(b), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "after faster" in done.stdout
    assert (out / "comparison.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run(
        [servebench_exe, "compare", str(a), str(empty)], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "no runs" in bad.stderr


def test_studies_with_nothing_in_common_are_an_error(trees, tmp_path):
    a, b, _ = trees
    other = tmp_path / "other"
    shutil.copytree(b / "runs" / "local" / "baseline", other / "runs" / "local" / "renamed")
    with pytest.raises(CompareError, match="share no"):
        _compare(a, other)
