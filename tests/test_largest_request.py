"""The largest-request benchmark (servebench.bench.largest_request): its requests, its measure
of how long the workers compute after an answer, and one variant of the tiny model served."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from servebench.bench import largest_request
from servebench.settings import LoadgenSettings, deploy_target


def test_the_requests_reach_each_limit_and_expect_its_status():
    limits = {"max_text_chars": 100, "max_batch_texts": 8, "max_request_tokens": 40}
    by_name = {case.name: case for case in largest_request.cases(limits, max_length=16)}
    # 40 tokens admit 2 texts of 16 tokens: the largest accepted request; 8 are over the limit
    largest = json.loads(by_name["largest-accepted"].body)["texts"]
    assert len(largest) == 2 and all(len(text) == 100 for text in largest)
    assert by_name["largest-accepted"].expected_status == 200
    assert by_name["all-texts-words"].expected_status == 400
    emoji = by_name["all-texts-emoji"].body
    assert len(json.loads(emoji)["texts"]) == 8 and len(emoji) > 8 * 100 * 12
    assert by_name["over-chunked"].expected_status == 413 and by_name["over-chunked"].body is None
    # without a token limit below max_batch_texts x max_length, every text count is accepted
    loose = {"max_text_chars": 100, "max_batch_texts": 8, "max_request_tokens": None}
    by_name = {case.name: case for case in largest_request.cases(loose, max_length=16)}
    assert by_name["largest-accepted"].texts == 8
    assert by_name["all-texts-words"].expected_status == 200


def _totals(busy_until_s: float, end_s: float = 10.0, step_s: float = 0.05) -> pd.DataFrame:
    """Workers' CPU time sampled every step_s: one core busy until busy_until_s, then idle but
    for a tick (10 ms) every second, as an idle BentoML worker."""
    rows, cpu = [], 0.0
    for index in range(int(end_s / step_s) + 1):
        elapsed = round(index * step_s, 3)
        rows.append({"elapsed_s": elapsed, "rss_bytes": 1, "cpu_s": round(cpu, 3)})
        cpu += step_s if elapsed < busy_until_s else (0.01 if index % 20 == 0 else 0.0)
    return pd.DataFrame(rows)


def test_busy_after_the_answer_is_how_long_the_workers_kept_computing():
    # answered at 2 s, the workers computed on until 5 s (a timed-out request's inference)
    assert largest_request.busy_after_s(_totals(5.0), 2.0, 0.25, 0.1) == pytest.approx(3.0)
    # idle at once
    assert largest_request.busy_after_s(_totals(1.0), 2.0, 0.25, 0.1) == pytest.approx(0.0)
    # still busy at the last sample: not known yet
    assert largest_request.busy_after_s(_totals(20.0), 2.0, 0.25, 0.1) is None


def test_worker_totals_sum_the_workers_and_leave_the_main_process_out():
    samples = pd.DataFrame(
        [
            {"elapsed_s": 0.0, "pid": 1, "role": "main", "rss_bytes": 100, "cpu_s": 1.0},
            {"elapsed_s": 0.0, "pid": 2, "role": "worker", "rss_bytes": 500, "cpu_s": 2.0},
            {"elapsed_s": 0.0, "pid": 3, "role": "worker", "rss_bytes": 400, "cpu_s": 3.0},
        ]
    )
    totals = largest_request.worker_totals(samples)
    assert totals.to_dict("records") == [{"elapsed_s": 0.0, "rss_bytes": 900, "cpu_s": 5.0}]


@pytest.mark.e2e
def test_a_served_variant_answers_the_largest_request_and_refuses_the_oversized(testbed, tmp_path):
    config = testbed.config
    own_cpus = os.sched_getaffinity(0)
    rows = largest_request.measure_variant(
        "optimized",
        testbed.records["optimized"],
        deploy_target(config, "optimized"),
        LoadgenSettings.of(config),
        tmp_path,
        interval_s=0.02,
    )
    statuses = {row["request"]: row["status"] for row in rows}
    assert statuses == {
        "largest-accepted": 200,
        "all-texts-words": 400,
        "all-texts-emoji": 400,
        "over-content-length": 413,
        "over-chunked": 413,
    }
    assert all(row["as_expected"] and row["worker_pids_unchanged"] for row in rows)
    # it sent from the generator's cores and gave this thread its cores back (the next
    # variant's server starts from it)
    assert os.sched_getaffinity(0) == own_cpus
    by_name = {row["request"]: row for row in rows}
    # the tiny model's largest request takes well under its timeout_s, and its worker is
    # sampled before, during and after it
    largest = by_name["largest-accepted"]
    timeout_s = testbed.records["optimized"]["settings"]["timeout_s"]
    assert largest["texts"] > 1 and largest["elapsed_s"] < timeout_s
    assert 0 < largest["worker_rss_before_mb"] <= largest["worker_rss_peak_mb"]
    assert largest["worker_busy_after_answer_s"] is not None
    assert by_name["over-chunked"]["elapsed_s"] < 1.0
    assert (tmp_path / "processes.csv").is_file()
