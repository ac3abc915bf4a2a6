"""Summary and validity from per-request logs, without starting Locust; inputs and CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from servebench import arrivals
from servebench.cli import main
from servebench.loadgen import runner
from servebench.loadgen.summary import read_worker_logs, request_table, summarize
from servebench.payloads import PayloadError, read_texts

COLUMNS = "index,worker,payload_index,scheduled_s,sent_s,done_s,status,outcome,delayed,error\n"


def write_log(path, schedule, *, lag_s=0.0002, service_s=0.05, outcome=None, skip=()):
    rows = []
    for index, scheduled in enumerate(schedule.scheduled_s.tolist()):
        if index in skip:
            continue
        kind = outcome(index) if outcome else "ok"
        if kind == "dropped":
            rows.append(f"{index},0,0,{scheduled!r},,,,dropped,0,in-flight cap\n")
            continue
        lag = lag_s(index) if callable(lag_s) else lag_s
        sent, done = scheduled + lag, scheduled + lag + service_s
        status = {"ok": 200, "rejected": 429, "failed": 500, "timeout": 0}[kind]
        rows.append(
            f"{index},0,{index % 3},{scheduled!r},{sent:.7f},{done:.7f},{status},{kind},0,\n"
        )
    path.write_text(COLUMNS + "".join(rows))


def summary_of(tmp_path, schedule, *, warmup_s=0.0, cpu=20.0, validity=None, **log):
    write_log(tmp_path / "requests_worker0.csv", schedule, **log)
    table = request_table(read_worker_logs(tmp_path), warmup_s)
    return table, summarize(
        table,
        schedule,
        warmup_s=warmup_s,
        validity=validity or {},
        worker_results=[{"worker": 0, "cpu_percent": cpu}],
        workers=1,
    )


@pytest.fixture
def schedule():
    return arrivals.make_schedule("gamma", seed=3, rate_rps=100.0, cv=2.0, duration_s=20.0)


def test_a_run_on_schedule_is_valid_and_counted(tmp_path, schedule):
    table, summary = summary_of(tmp_path, schedule, warmup_s=2.0)
    assert summary.valid, summary.invalid_reasons
    measured = schedule.scheduled_s >= 2.0
    assert summary.counts["ok"] == measured.sum()
    assert summary.counts_including_warmup["ok"] == len(schedule)
    assert table["in_warmup"].sum() == (~measured).sum()
    assert summary.offered_rate_rps == pytest.approx(measured.sum() / 18.0)
    assert summary.achieved_rate_rps == pytest.approx(summary.offered_rate_rps, rel=1e-3)
    assert summary.latency_p50_ms == pytest.approx(50.2, abs=0.01)
    assert summary.service_p99_ms == pytest.approx(50.0, abs=0.01)
    assert summary.send_lag_p99_ms == pytest.approx(0.2, abs=0.01)
    assert summary.schedule_hash == schedule.schedule_hash
    assert summary.realized_cv == pytest.approx(summary.schedule_cv, rel=1e-3)
    assert summary.ks_pvalue > 0.01
    assert set(table.columns) >= {
        "scheduled_s",
        "sent_s",
        "done_s",
        "latency_ms",
        "service_ms",
        "send_lag_ms",
        "status",
        "outcome",
        "in_warmup",
    }


def test_late_sends_make_the_run_invalid(tmp_path, schedule):
    # Every 20th request leaves 30 ms late: p99 of the send lag is 30 ms.
    _, summary = summary_of(tmp_path, schedule, lag_s=lambda i: 0.03 if i % 20 == 0 else 0.0002)
    assert not summary.valid
    assert any("send-lag p99 30.00 ms exceeds 5.00 ms" in r for r in summary.invalid_reasons)
    assert summary.latency_max_ms == pytest.approx(80.0, abs=0.01)


def test_thresholds_are_configurable(tmp_path, schedule):
    _, summary = summary_of(tmp_path, schedule, lag_s=0.004, validity={"send_lag_p99_max_ms": 3.0})
    assert any("send-lag" in reason for reason in summary.invalid_reasons)
    _, summary = summary_of(tmp_path, schedule, lag_s=0.004)
    assert summary.valid, summary.invalid_reasons


def test_busy_generator_dropped_and_missing_requests_are_reported(tmp_path, schedule):
    _, summary = summary_of(
        tmp_path,
        schedule,
        cpu=97.0,
        outcome=lambda i: "dropped" if i % 10 == 0 else "ok",
        skip=(5, 6),
    )
    reasons = " | ".join(summary.invalid_reasons)
    assert "generator CPU 97% of a core exceeds 90%" in reasons
    assert "2 planned requests have no entry in the log" in reasons
    assert "achieved rate" in reasons
    assert summary.counts["dropped"] == len(range(0, len(schedule), 10))


def test_outcomes_are_counted_and_latency_uses_ok_answers(tmp_path, schedule):
    kinds = ["ok", "rejected", "failed", "timeout"]
    _, summary = summary_of(tmp_path, schedule, outcome=lambda i: kinds[i % 4])
    for offset, kind in enumerate(kinds):
        assert summary.counts[kind] == len(range(offset, len(schedule), 4))
    assert summary.throughput_rps == pytest.approx(summary.counts["ok"] / 20.0, rel=0.01)


def test_throughput_is_the_rate_of_answers_within_the_window(tmp_path, schedule):
    """A server with a steady queue (each answer 1 s after its send: 100 requests in flight)
    answers as many per second as it is offered; a FIFO server with a 20 ms service time,
    offered 100 req/s, answers 50 per second, however long its queue grows."""
    _, steady = summary_of(tmp_path, schedule, warmup_s=2.0, service_s=1.0)
    assert steady.throughput_rps == pytest.approx(steady.offered_rate_rps, rel=0.03)
    # Counting the window's own requests until the last answer would give 18 / 19 of it.
    assert steady.throughput_rps > 0.97 * steady.offered_rate_rps

    rows, free_s = [], 0.0
    for index, scheduled in enumerate(schedule.scheduled_s.tolist()):
        free_s = max(free_s, scheduled) + 0.02
        rows.append(f"{index},0,0,{scheduled!r},{scheduled!r},{free_s!r},200,ok,0,\n")
    (tmp_path / "requests_worker0.csv").write_text(COLUMNS + "".join(rows))
    table = request_table(read_worker_logs(tmp_path), 2.0)
    behind = summarize(
        table, schedule, warmup_s=2.0, validity={},
        worker_results=[{"worker": 0, "cpu_percent": 20.0}], workers=1,
    )  # fmt: skip
    assert behind.throughput_rps == pytest.approx(50.0, rel=0.01)


def test_realized_cv_far_from_the_schedule_is_invalid(tmp_path):
    schedule = arrivals.make_schedule("constant", seed=1, rate_rps=100.0, duration_s=10.0)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(0, 0.009, len(schedule))
    _, summary = summary_of(tmp_path, schedule, lag_s=lambda i: jitter[i])
    assert summary.target_cv == 0.0 and summary.schedule_cv < 1e-9
    assert summary.realized_cv > 0.2
    assert any("realized interarrival CV" in r for r in summary.invalid_reasons)


def test_the_ks_rule_judges_the_generator_not_the_seeds_draw(tmp_path):
    """4 of 400 seeds draw a Poisson schedule of ~200 arrivals that the KS test rejects by
    itself at 0.01 (seed 59 among them): sent faithfully, such a run is valid (in the study,
    one such draw made both variants' run of a repetition invalid). Sends that distort a
    schedule which passes (grouped on a 100 ms clock) are still invalid."""
    atypical = arrivals.make_schedule("exponential", seed=59, rate_rps=10.0, duration_s=20.0)
    (tmp_path / "atypical").mkdir()
    (tmp_path / "distorted").mkdir()
    _, summary = summary_of(tmp_path / "atypical", atypical, lag_s=0.0002)
    assert summary.schedule_ks_pvalue < 0.01 and summary.ks_pvalue < 0.01
    assert summary.valid, summary.invalid_reasons
    typical = arrivals.make_schedule("exponential", seed=1, rate_rps=10.0, duration_s=20.0)
    ticks = np.ceil(typical.scheduled_s / 0.1) * 0.1 - typical.scheduled_s
    _, distorted = summary_of(tmp_path / "distorted", typical, lag_s=lambda i: ticks[i])
    assert distorted.schedule_ks_pvalue >= 0.01
    assert any("KS test rejects" in reason for reason in distorted.invalid_reasons)


def test_a_line_cut_by_a_kill_is_ignored(tmp_path, schedule):
    write_log(tmp_path / "requests_worker0.csv", schedule)
    with (tmp_path / "requests_worker1.csv").open("w") as file:
        file.write(COLUMNS + "7,1,0,0.5,0.50")  # no outcome: written when the process died
    log = read_worker_logs(tmp_path)
    assert len(log) == len(schedule)


def test_payloads_bodies_and_cores(tmp_path):
    payloads = tmp_path / "texts.csv"
    payloads.write_text('id,text\n1,"hello, ""world"""\n2,second\n')
    assert read_texts(payloads) == ['hello, "world"', "second"]
    assert json.loads(runner.render_body(runner.DEFAULT_BODY_TEMPLATE, 'a "b"')) == {
        "texts": ['a "b"']
    }
    assert json.loads(runner.render_body('{"text": "say {text}", "n": 1}', "x")) == {
        "text": "say x",
        "n": 1,
    }
    with pytest.raises(runner.LoadTestError, match="not valid JSON"):
        runner.render_body("{text}", "x")
    (tmp_path / "nocol.csv").write_text("body\nx\n")
    with pytest.raises(PayloadError, match="needs a 'text' column"):
        read_texts(tmp_path / "nocol.csv")
    assert runner.parse_cpus("1,3-4") == [1, 3, 4]
    assert runner.parse_cpus([2, 1]) == [1, 2]
    with pytest.raises(runner.LoadTestError, match="bad CPU list"):
        runner.parse_cpus("one")


def test_settings_follow_the_config():
    from servebench.config import load_config, schema_defaults
    from servebench.settings import LoadgenSettings

    config = load_config()
    settings = LoadgenSettings.of(config)
    assert settings.max_in_flight == config["loadgen"]["max_in_flight"]
    assert list(settings.cpus) == config["cpus"]["loadgen"]
    # One source of the validity rules' defaults: the schema.
    assert settings.validity == schema_defaults("loadgen", "validity")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arrival", "gamma", "--rate", "5", "--duration", "2"], "exactly one of cv or shape"),
        (["--arrival", "constant", "--duration", "2"], "give --rate"),
        (["--arrival", "constant", "--rate", "5"], "--duration SECONDS or --requests N"),
        (["--arrival", "constant", "--rate", "5", "--duration", "2", "--warmup", "3"], "warm-up"),
        (["--arrival", "constant", "--rate", "5", "--duration", "2", "--cpus", "999"], "cores"),
        (["--arrival", "trace", "--rate", "5"], "--trace FILE"),
        (["--arrival", "constant", "--rate", "5", "--requests", "3", "--host", "x:1"], "a URL"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    payloads = tmp_path / "texts.csv"
    payloads.write_text("text\nhello\n")
    argv = ["loadtest", "--host", "http://127.0.0.1:9", "--seed", "1", "--out", str(tmp_path / "o")]
    assert main([*argv, "--payloads", str(payloads), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "o" / "summary.json").exists()


def test_parquet_round_trip_keeps_types(tmp_path, schedule):
    table, _ = summary_of(tmp_path, schedule)
    table.to_parquet(tmp_path / "r.parquet", index=False)
    back = pd.read_parquet(tmp_path / "r.parquet")
    assert back["outcome"].tolist() == table["outcome"].tolist()
    assert back["in_warmup"].dtype == bool
