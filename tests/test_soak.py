"""The soak benchmark's verdicts (servebench.bench.soak) on synthetic samples; its bad requests
against a served Bento are in tests/test_service.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from servebench.bench import soak


def _samples(rss_of: dict[int, list[int]], roles: dict[int, str]) -> pd.DataFrame:
    rows = []
    for pid, values in rss_of.items():
        for index, rss in enumerate(values):
            if rss is not None:
                rows.append({"elapsed_s": 10.0 * index, "pid": pid, "role": roles[pid],
                             "rss_bytes": rss})  # fmt: skip
    return pd.DataFrame(rows)


def test_memory_growth_compares_the_medians_after_warm_up_and_at_the_end():
    # samples every 10 s for 100 s: a steady main process, a worker that grows by 20 %
    samples = _samples(
        {1: [100] * 11, 2: [500, 900, 1000, 1000, 1010, 1050, 1100, 1150, 1200, 1200, 1200]},
        {1: "main", 2: "worker"},
    )
    growth = {row["pid"]: row for row in soak.memory_growth(samples, 20.0, 100.0, 25.0)}
    assert growth[1]["growth_percent"] == 0.0
    # after the warm-up (20 s, window 25 s): median of 1000, 1000, 1010; at the end: 1200 x 3
    assert growth[2]["rss_after_warmup_bytes"] == 1000
    assert growth[2]["growth_percent"] == pytest.approx(20.0)
    assert growth[2]["rss_max_bytes"] == 1200


def test_a_respawned_worker_is_a_replaced_process():
    steady = _samples({1: [100] * 5, 2: [500] * 5}, {1: "main", 2: "worker"})
    assert soak.replaced_processes(steady)["replaced"] == 0
    # worker 2 dies after 20 s, worker 3 takes its place
    respawned = _samples(
        {1: [100] * 5, 2: [500, 500, 500, None, None], 3: [None, None, None, 400, 450]},
        {1: "main", 2: "worker", 3: "worker"},
    )
    facts = soak.replaced_processes(respawned)
    assert facts["replaced"] == 2 and facts["pids_at_start"] == [1, 2]
    assert facts["pids_at_end"] == [1, 3]


def test_bad_requests_break_each_limit_once():
    limits = {"max_text_chars": 100, "max_batch_texts": 8, "max_request_tokens": None}
    kinds = {request.kind: request for request in soak.bad_requests(limits, max_length=16)}
    # the derived token limit, 8 texts x 16 tokens, cannot be broken by a request within
    # max_batch_texts: that kind is left out
    assert set(kinds) == {
        "malformed-json", "unknown-field", "wrong-type", "empty-text", "too-many-texts",
        "text-too-long", "over-content-length", "over-chunked",
    }  # fmt: skip
    assert len(json.loads(kinds["too-many-texts"].body)["texts"]) == 9
    assert len(json.loads(kinds["text-too-long"].body)["texts"][0]) == 101
    configured = {**limits, "max_request_tokens": 40}
    over = {r.kind: r for r in soak.bad_requests(configured, max_length=16)}["over-token-limit"]
    texts = json.loads(over.body)["texts"]
    assert len(texts) == 3 and all(len(text) == 100 for text in texts)  # 3 x 16 > 40 tokens
