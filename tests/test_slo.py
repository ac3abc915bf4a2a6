"""SLO gates (servebench.slo): the grammar, each gate's verdict on a summary, goodput."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from servebench import arrivals
from servebench.cli import main
from servebench.loadgen.summary import read_worker_logs, request_table, summarize
from servebench.records import RunSummary
from servebench.slo import GATE_METRICS, Gate, GateError, goodput_latency_ms, judge, parse_gates

COLUMNS = "index,worker,payload_index,scheduled_s,sent_s,done_s,status,outcome,delayed,error\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99_ms<=200", Gate("p99_ms", "<=", 200.0)),
        ("  error_rate <= 0.01 ", Gate("error_rate", "<=", 0.01)),
        ("throughput_rps>=1e2", Gate("throughput_rps", ">=", 100.0)),
        ("p99_all_ms<=.5", Gate("p99_all_ms", "<=", 0.5)),
    ],
)
def test_gates_parse(text, expected):
    assert Gate.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99_ms<200", "expected METRIC<=NUMBER"),
        ("p99_ms=<200", "expected METRIC<=NUMBER"),
        ("p99<=200", "unknown metric 'p99'"),
        ("p99_ms<=fast", "expected METRIC<=NUMBER"),
        ("", "expected METRIC<=NUMBER"),
    ],
)
def test_bad_gates_say_what_is_expected(text, message):
    with pytest.raises(GateError, match=message):
        Gate.parse(text)


def test_every_metric_is_a_summary_value():
    summary = RunSummary()
    for name, metric in GATE_METRICS.items():
        assert hasattr(summary, metric.field), name


def test_verdicts():
    summary = RunSummary(
        latency_p99_ms=150.0,
        latency_all_p99_ms=None,  # the p99 fell on a failed request: infinite
        throughput_rps=40.0,
        counts={"ok": 98, "failed": 2},
    )
    verdicts = judge(
        parse_gates(
            ["p99_ms<=200", "p99_ms<=100", "error_rate<=0.01", "p99_all_ms<=1000"]
            + ["p99_all_ms>=1", "throughput_rps>=40", "goodput_rps>=1"]
        ),
        summary,
    )
    assert [v["passed"] for v in verdicts] == [True, False, False, False, True, True, False]
    assert verdicts[2]["value"] == pytest.approx(0.02)
    assert verdicts[3]["value"] == "inf"
    assert verdicts[6]["value"] is None  # no latency gate: goodput undefined, the gate fails
    json.dumps(verdicts)  # summary.json holds them


def test_goodput_bound_is_the_smallest_latency_gate():
    assert goodput_latency_ms(parse_gates(["error_rate<=0.1"])) is None
    assert goodput_latency_ms(parse_gates(["p99_ms<=200", "p50_all_ms<=50"])) == 50
    assert goodput_latency_ms(parse_gates(["p99_ms>=5", "p99_ms<=80"])) == 80


def test_goodput_counts_ok_answers_within_every_latency_gate(tmp_path):
    """Half the requests take 20 ms, half 120 ms, 1 in 10 fails: with p99_ms<=100 goodput is
    the fast ok ones per second, over the throughput's window."""
    schedule = arrivals.make_schedule("exponential", seed=5, rate_rps=50.0, duration_s=20.0)
    rows = []
    for index, scheduled in enumerate(schedule.scheduled_s.tolist()):
        service_s = 0.02 if index % 2 else 0.12
        outcome, status = ("failed", 500) if index % 10 == 3 else ("ok", 200)
        done = scheduled + service_s
        rows.append(f"{index},0,0,{scheduled!r},{scheduled!r},{done!r},{status},{outcome},0,\n")
    (tmp_path / "requests_worker0.csv").write_text(COLUMNS + "".join(rows))
    table = request_table(read_worker_logs(tmp_path), 1.0)

    def summary_with(gates):
        return summarize(
            table,
            schedule,
            warmup_s=1.0,
            validity={},
            worker_results=[{"worker": 0, "cpu_percent": 10.0}],
            workers=1,
            gates=parse_gates(gates),
        )

    summary = summary_with(["p99_ms<=100", "error_rate<=0.2"])
    # Over the throughput's window: the answers that arrived after the warm-up, by the end.
    window_s = schedule.horizon_s - 1.0
    departed = table[(table["done_s"] >= 1.0) & (table["done_s"] <= schedule.horizon_s)]
    fast_ok = ((departed["outcome"] == "ok") & (departed["latency_ms"] <= 100)).sum()
    assert summary.goodput_latency_ms == 100
    assert summary.goodput_rps == pytest.approx(fast_ok / window_s)
    assert 0 < summary.goodput_rps < 0.6 * summary.throughput_rps
    assert [v["passed"] for v in summary.slo_gates] == [False, True]
    assert summary.slo_gates[0]["value"] == pytest.approx(120.0, abs=0.01)
    # A looser gate: every ok answer meets it, goodput = throughput.
    loose = summary_with(["p99_ms<=500"])
    assert loose.goodput_rps == pytest.approx(loose.throughput_rps)
    assert summary_with([]).goodput_rps is None and summary_with([]).slo_gates == []
    assert math.isfinite(RunSummary.from_dict(summary.to_dict()).goodput_rps)


def test_cli_bad_gate_is_one_line_and_exit_2(tmp_path, capsys):
    status = main(
        ["loadtest", "--host", "http://127.0.0.1:9", "--rate", "5", "--duration", "1"]
        + ["--out", str(tmp_path), "--slo", "p99<=5"]
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric 'p99'" in err[0], err


def test_numbers_in_the_grammar_match_python_floats():
    for number in ("200", "0.01", "1e-3", "2.5E2", ".5", "7."):
        assert Gate.parse(f"p99_ms<={number}").threshold == float(number)
    assert np.isclose(Gate.parse("error_rate>=-0").threshold, 0.0)
