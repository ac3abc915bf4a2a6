"""From the per-request log to `requests.parquet` and `summary.json`: statistics and validity.

Everything is counted from the generator's own per-request log (Locust's CSVs miss the last
second and know nothing of the schedule). Warm-up requests (scheduled before the end of the
warm-up) are kept in the raw data and left out of every statistic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servebench.arrivals import Schedule, interarrival_cv, ks_test, send_ks_test
from servebench.config import schema_defaults
from servebench.quantiles import quantile, quantile_ci
from servebench.records import LOG_COLUMNS, OUTCOMES, PERCENTILES, RunSummary
from servebench.slo import Gate, goodput_latency_ms, judge

if TYPE_CHECKING:
    import pandas as pd


# Confidence level of the per-run percentile intervals.
CI_LEVEL = 0.95


def validity_rules(given: dict[str, float] | None) -> dict[str, float]:
    """The validity thresholds: `given` over the schema's `loadgen.validity` defaults."""
    defaults = schema_defaults("loadgen", "validity")
    return {**defaults, **{k: v for k, v in (given or {}).items() if v is not None}}


def read_worker_logs(log_dir: Path) -> pd.DataFrame:
    """The per-worker CSV logs merged into one table, one row per request, sorted by index."""
    import pandas as pd

    frames = []
    for path in sorted(log_dir.glob("requests_worker*.csv")):
        try:
            frames.append(
                pd.read_csv(
                    path,
                    dtype={"error": "string", "outcome": "string"},
                    keep_default_na=False,
                    na_values={"sent_s": [""], "done_s": [""], "status": [""]},
                )
            )
        except pd.errors.EmptyDataError:
            continue
    columns = list(LOG_COLUMNS)
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})
    table = pd.concat(frames, ignore_index=True)
    # A line cut in half by a kill is dropped rather than read as a request.
    table = table.dropna(subset=["index", "outcome"])
    table = table[table["outcome"].isin(OUTCOMES)]
    return table.sort_values("index", kind="stable").reset_index(drop=True)


def empty_request_table() -> pd.DataFrame:
    """requests.parquet's columns with no row (the file of a run that sent nothing)."""
    return request_table(read_worker_logs(Path("/nonexistent")), 0.0)


def request_table(log: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """The contract's per-request columns, derived from the raw log."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "index": log["index"].astype("int64"),
            "worker": log["worker"].astype("int64"),
            "payload_index": log["payload_index"].astype("int64"),
            "scheduled_s": log["scheduled_s"].astype("float64"),
            "sent_s": pd.to_numeric(log["sent_s"], errors="coerce").astype("float64"),
            "done_s": pd.to_numeric(log["done_s"], errors="coerce").astype("float64"),
        }
    )
    table["latency_ms"] = (table["done_s"] - table["scheduled_s"]) * 1000.0
    table["service_ms"] = (table["done_s"] - table["sent_s"]) * 1000.0
    table["send_lag_ms"] = (table["sent_s"] - table["scheduled_s"]) * 1000.0
    table["status"] = pd.to_numeric(log["status"], errors="coerce").astype("Int64")
    table["outcome"] = log["outcome"].astype("string")
    table["delayed"] = log["delayed"].astype("int64").astype(bool)
    table["in_warmup"] = table["scheduled_s"] < warmup_s
    table["error"] = log["error"].astype("string")
    return table


def _percentiles(values: np.ndarray, prefix: str) -> dict[str, Any]:
    """Percentiles (order statistics), min, mean and max of the finite values; with
    `<prefix>_ci_ms`, each percentile's distribution-free 95 % interval (None: too few)."""
    values = np.sort(values[np.isfinite(values)])
    result: dict[str, Any] = {}
    intervals: dict[str, list[float] | None] = {}
    for q in PERCENTILES:
        result[f"{prefix}_p{q}_ms"] = quantile(values, q / 100) if len(values) else None
        ci = quantile_ci(values, q / 100, CI_LEVEL)
        intervals[f"p{q}"] = list(ci) if ci is not None else None
    result[f"{prefix}_min_ms"] = float(values[0]) if len(values) else None
    result[f"{prefix}_max_ms"] = float(values[-1]) if len(values) else None
    result[f"{prefix}_mean_ms"] = float(values.mean()) if len(values) else None
    result[f"{prefix}_ci_ms"] = intervals
    return result


def all_request_latencies_ms(measured: pd.DataFrame) -> np.ndarray:
    """Every measured request's latency, sorted, a request that did not end ok (failed,
    rejected, timed out, dropped) counting as infinitely slow: what an SLO judges."""
    latency = measured["latency_ms"].to_numpy(dtype=float)
    not_ok = measured["outcome"].astype(str).to_numpy() != "ok"
    return np.sort(np.where(not_ok | ~np.isfinite(latency), np.inf, latency))


def _all_request_percentiles(measured: pd.DataFrame) -> dict[str, Any]:
    """Latency percentiles over every measured request (all_request_latencies_ms). None where
    the percentile falls on a request that did not end ok."""
    values = all_request_latencies_ms(measured)
    result: dict[str, Any] = {}
    for q in (50, 99):
        value = quantile(values, q / 100) if len(values) else math.nan
        result[f"latency_all_p{q}_ms"] = value if math.isfinite(value) else None
    return result


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def summarize(
    table: pd.DataFrame,
    schedule: Schedule,
    *,
    warmup_s: float,
    validity: dict[str, float],
    worker_results: list[dict[str, Any]],
    workers: int,
    interrupted: bool = False,
    locust_exit_code: int | None = 0,
    gates: tuple[Gate, ...] = (),
) -> RunSummary:
    """The run's summary (the contract's fields) with `valid` and `invalid_reasons`; with
    `gates`, goodput and each gate's verdict (servebench.slo)."""
    rules = validity_rules(validity)
    horizon = schedule.horizon_s
    window_s = horizon - warmup_s
    planned = schedule.scheduled_s
    planned_measured = planned[planned >= warmup_s]
    measured = table[~table["in_warmup"]]
    sent = measured[measured["sent_s"].notna()]
    sent_times = np.sort(sent["sent_s"].to_numpy())
    ok = measured[measured["outcome"] == "ok"]

    offered = len(planned_measured) / window_s if window_s > 0 else math.nan
    last_sent = float(sent_times[-1]) if len(sent_times) else horizon
    achieved = len(sent_times) / (max(horizon, last_sent) - warmup_s) if window_s > 0 else math.nan
    # Throughput is the departure rate: ok answers that arrived within the measured window,
    # whenever their request was sent (warm-up included). A server with a steady queue (a
    # batching one holds several requests at any time) answers as many per second as it is
    # offered; counting the measured window's own requests until the last answer instead
    # charged it the drain of its final queue (8 % of a 5 s step at a queue of 15).
    answer_end_s = max(horizon, last_sent)
    answer_window_s = answer_end_s - warmup_s
    all_ok = table[table["outcome"] == "ok"]
    departed = all_ok[(all_ok["done_s"] >= warmup_s) & (all_ok["done_s"] <= answer_end_s)]
    throughput = len(departed) / answer_window_s if window_s > 0 else math.nan
    # Goodput: those answers that also met every latency gate, over the same window.
    good_ms = goodput_latency_ms(gates)
    goodput = math.nan
    if good_ms is not None and window_s > 0:
        goodput = int((departed["latency_ms"] <= good_ms).sum()) / answer_window_s
    if schedule.rate_rps is not None:
        target_rate = schedule.rate_rps
    elif schedule.profile is not None and window_s > 0:
        span = schedule.profile.cumulative(np.array([warmup_s, horizon]))
        target_rate = float(span[1] - span[0]) / window_s
    else:
        target_rate = offered

    # CVs in operational time (the plain interarrival CV at a constant rate).
    schedule_cv = interarrival_cv(schedule.operational(planned_measured))
    realized_cv = interarrival_cv(schedule.operational(sent_times))
    resolution_s = rules["ks_resolution_ms"] / 1000.0
    ks = ks_test(schedule, sent_times, resolution_s=resolution_s)
    schedule_ks = ks_test(schedule, planned_measured, resolution_s=resolution_s)
    send_ks = send_ks_test(schedule, sent_times, planned_measured, resolution_s=resolution_s)

    counts = {outcome: int((measured["outcome"] == outcome).sum()) for outcome in OUTCOMES}
    counts_all = {outcome: int((table["outcome"] == outcome).sum()) for outcome in OUTCOMES}
    missing = len(planned) - len(table)
    cpu_values = [r["cpu_percent"] for r in worker_results if r.get("cpu_percent") is not None]
    generator_cpu = max(cpu_values) if cpu_values else None

    fields: dict[str, Any] = {
        "arrival": schedule.arrival,
        "seed": schedule.seed,
        "schedule_hash": schedule.schedule_hash,
        "horizon_s": horizon,
        "warmup_s": warmup_s,
        "planned_requests": int(len(planned)),
        "measured_planned_requests": int(len(planned_measured)),
        "measured_sent_requests": int(len(sent_times)),
        "target_rate_rps": _finite(target_rate),
        "offered_rate_rps": _finite(offered),
        "achieved_rate_rps": _finite(achieved),
        "throughput_rps": _finite(throughput),
        "goodput_rps": _finite(goodput),
        "goodput_latency_ms": good_ms,
        "target_cv": _finite(schedule.target_cv),
        "schedule_cv": _finite(schedule_cv),
        "realized_cv": _finite(realized_cv),
        "gamma_shape": schedule.shape,
        "ks_statistic": ks[0] if ks else None,
        "ks_pvalue": ks[1] if ks else None,
        "ks_reference": ks[2] if ks else None,
        "schedule_ks_pvalue": schedule_ks[1] if schedule_ks else None,
        "send_ks_statistic": send_ks[0] if send_ks else None,
        "send_ks_pvalue": send_ks[1] if send_ks else None,
        **_percentiles(sent["send_lag_ms"].to_numpy(), "send_lag"),
        **_percentiles(ok["latency_ms"].to_numpy(), "latency"),
        **_percentiles(ok["service_ms"].to_numpy(), "service"),
        **_all_request_percentiles(measured),
        "counts": counts,
        "counts_including_warmup": counts_all,
        "delayed_requests": int(measured["delayed"].sum()),
        "missing_requests": int(missing),
        "generator_cpu_percent": _finite(generator_cpu) if generator_cpu is not None else None,
        "generator_cpu_percent_by_worker": {
            str(r["worker"]): r.get("cpu_percent") for r in worker_results
        },
        "loadgen_workers": workers,
        "interrupted": interrupted,
        "locust_exit_code": locust_exit_code,
        "validity_rules": rules,
    }
    summary = RunSummary.from_dict(fields)
    reasons = invalid_reasons(summary, rules, n_sent=len(sent_times), expected_workers=workers)
    summary.valid = not reasons
    summary.invalid_reasons = reasons
    summary.slo_gates = judge(gates, summary)
    return summary


def invalid_reasons(
    summary: RunSummary, rules: dict[str, float], *, n_sent: int, expected_workers: int
) -> list[str]:
    """Every validity rule the run breaks, one readable line each (empty: valid)."""
    reasons: list[str] = []
    if summary.interrupted:
        reasons.append("the run was interrupted before the end of its schedule")
    if summary.locust_exit_code not in (0, None):
        reasons.append(f"Locust exited with code {summary.locust_exit_code} (see locust.log)")
    if summary.missing_requests > 0:
        reasons.append(
            f"{summary.missing_requests} planned requests have no entry in the log "
            "(never sent, or no answer before the end)"
        )
    offered, achieved = summary.offered_rate_rps, summary.achieved_rate_rps
    if offered is None or achieved is None or offered <= 0:
        reasons.append("no measured requests: the warm-up covers the whole run")
    else:
        gap = abs(achieved - offered) / offered
        if gap > rules["achieved_rate_tolerance"]:
            reasons.append(
                f"achieved rate {achieved:.4g} req/s is {100 * gap:.1f}% off the offered "
                f"{offered:.4g} req/s (tolerance {100 * rules['achieved_rate_tolerance']:.1f}%)"
            )
    planned_cv, realized_cv = summary.schedule_cv, summary.realized_cv
    if n_sent >= rules["cv_min_arrivals"] and planned_cv is not None:
        # Relative to the CV of the drawn schedule: a sample CV of a bursty law varies by more
        # than 10% between seeds, so the generator is judged on what it was asked to send.
        # Constant arrivals (CV 0): the tolerance is absolute.
        constant = summary.target_cv == 0
        allowed = rules["cv_tolerance"] * (1.0 if constant else planned_cv)
        if realized_cv is None or abs(realized_cv - planned_cv) > allowed:
            reasons.append(
                f"realized interarrival CV {realized_cv if realized_cv is None else round(realized_cv, 4)} "
                f"differs from the schedule's {planned_cv:.4g} by more than "
                f"{100 * rules['cv_tolerance']:.0f}%"
            )
    # Like the CV rule, the generator is judged on what it was asked to send (send_ks_test):
    # the realized gaps against the drawn schedule's, not against the law. One seed in
    # 1/ks_alpha draws a schedule the law's test rejects by itself (the study's runs share
    # their seeds, so one such draw made a scenario's repetition invalid for every variant),
    # and sending it faithfully is no fault. ks_pvalue (against the law) stays in the summary.
    send_pvalue = summary.send_ks_pvalue
    if send_pvalue is not None and send_pvalue < rules["ks_alpha"]:
        reasons.append(
            f"KS test rejects the drawn schedule's interarrivals for the realized ones "
            f"(D={summary.send_ks_statistic:.4f}, p={send_pvalue:.3g} < {rules['ks_alpha']}): "
            "the generator did not send what it drew"
        )
    lag = summary.send_lag_p99_ms
    if lag is not None and lag > rules["send_lag_p99_max_ms"]:
        reasons.append(
            f"send-lag p99 {lag:.2f} ms exceeds {rules['send_lag_p99_max_ms']:.2f} ms "
            "(the generator could not send on schedule)"
        )
    cpu = summary.generator_cpu_percent
    if cpu is None:
        reasons.append("generator CPU was not measured (a worker did not finish)")
    elif cpu > rules["generator_cpu_max_percent"]:
        reasons.append(
            f"generator CPU {cpu:.0f}% of a core exceeds {rules['generator_cpu_max_percent']:.0f}%"
        )
    reported = len(summary.generator_cpu_percent_by_worker)
    if cpu is not None and reported < expected_workers:
        reasons.append(f"only {reported} of {expected_workers} generator workers finished")
    return reasons
