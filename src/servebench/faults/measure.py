"""What a fault did to the service, measured from the per-request log and the probes.

All times are on the schedule's clock (seconds since the schedule's start t0):
- requests not ok by outcome, time to the first error and to the first ok answer after the
  fault, peak corrected latency, requests lost (scheduled but never recorded: must be 0);
- time to recover: the earliest time T after the injection from which, for `quiet_s`
  seconds, every rolling `window_s` p99 (corrected latency of the ok requests scheduled in
  [w - window_s, w)) stays within the pre-fault band and no request in those windows failed.
  None ("not recovered") when the run ends first. The pre-fault band is the highest rolling
  p99 before the fault times (1 + band_tolerance).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

RECOVERY_STEP_S = 0.1


def rolling_p99_ms(
    scheduled_s: np.ndarray,
    latency_ms: np.ndarray,
    ends_s: np.ndarray,
    window_s: float,
) -> np.ndarray:
    """p99 of `latency_ms` over the requests scheduled in [end - window_s, end), for each end
    (NaN for an empty window). `scheduled_s` must be sorted."""
    lower = np.searchsorted(scheduled_s, ends_s - window_s, side="left")
    upper = np.searchsorted(scheduled_s, ends_s, side="left")
    result = np.full(len(ends_s), math.nan)
    for index, (first, last) in enumerate(zip(lower, upper, strict=True)):
        if last > first:
            result[index] = float(np.percentile(latency_ms[first:last], 99))
    return result


def _observed_s(requests: pd.DataFrame) -> np.ndarray:
    """When the client saw each request end (done, else sent, else scheduled)."""
    done = requests["done_s"].to_numpy(dtype=float)
    sent = requests["sent_s"].to_numpy(dtype=float)
    scheduled = requests["scheduled_s"].to_numpy(dtype=float)
    return np.where(np.isfinite(done), done, np.where(np.isfinite(sent), sent, scheduled))


def _none_if_nan(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def measure_fault(
    requests: pd.DataFrame,
    *,
    start_s: float,
    end_s: float | None = None,
    planned: int | None = None,
    warmup_s: float = 0.0,
    horizon_s: float | None = None,
    window_s: float = 5.0,
    quiet_s: float = 10.0,
    band_tolerance: float = 0.25,
    probes: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The measured figures of one fault (see the module's docstring); times in seconds on the
    schedule's clock, durations relative to the injection `start_s`."""
    end_s = start_s if end_s is None else end_s
    table = requests.sort_values("scheduled_s", kind="stable").reset_index(drop=True)
    scheduled = table["scheduled_s"].to_numpy(dtype=float)
    outcome = table["outcome"].astype("string").fillna("missing").to_numpy(dtype=str)
    latency = table["latency_ms"].to_numpy(dtype=float)
    ok = outcome == "ok"
    observed = _observed_s(table)
    horizon = float(horizon_s) if horizon_s is not None else float(np.nanmax(scheduled))

    recorded = int(len(table))
    lost = (planned - recorded if planned is not None else 0) + int((outcome == "missing").sum())
    not_ok = ~ok
    counts = pd.Series(outcome[not_ok]).value_counts().to_dict() if not_ok.any() else {}
    after = observed >= start_s
    errors_after = not_ok & after
    first_error = float(observed[errors_after].min()) - start_s if errors_after.any() else None
    sent = table["sent_s"].to_numpy(dtype=float)
    # "Answers again": an ok answer to a request sent once the fault showed, i.e. after the
    # first error seen after the injection (a K3s pod serves on for a while after its delete
    # command), or after the injection when nothing failed.
    since_s = start_s + first_error if first_error is not None else start_s
    ok_sent_after = ok & (sent >= since_s)
    first_ok = (
        float(table["done_s"].to_numpy(dtype=float)[ok_sent_after].min()) - start_s
        if ok_sent_after.any()
        else None
    )
    affected = np.isfinite(latency) & (observed >= start_s)
    peak_ms = float(latency[affected].max()) if affected.any() else None

    # The pre-fault band: rolling p99 of the ok requests after the warm-up, before the fault.
    step = RECOVERY_STEP_S
    ok_scheduled, ok_latency = scheduled[ok], latency[ok]
    pre_ends = np.arange(warmup_s + window_s, start_s + 1e-9, 1.0)
    pre_p99 = rolling_p99_ms(ok_scheduled, ok_latency, pre_ends, window_s)
    pre_p99 = pre_p99[np.isfinite(pre_p99)]
    if not len(pre_p99):  # the fault comes too early for a full window: all pre-fault requests
        before = ok & (scheduled >= warmup_s) & (scheduled < start_s)
        pre_p99 = np.array([np.percentile(latency[before], 99)]) if before.any() else pre_p99
    band_ms = float(pre_p99.max()) * (1.0 + band_tolerance) if len(pre_p99) else None

    recovery_s: float | None = None
    reason = None
    if band_ms is None:
        reason = "no ok request before the fault: no pre-fault band"
    else:
        ends = np.arange(start_s, horizon + step / 2, step)
        p99 = rolling_p99_ms(ok_scheduled, ok_latency, ends, window_s)
        bad_scheduled = scheduled[not_ok]
        bad_in_window = np.searchsorted(bad_scheduled, ends, side="left") - np.searchsorted(
            bad_scheduled, ends - window_s, side="left"
        )
        any_in_window = np.searchsorted(scheduled, ends, side="left") - np.searchsorted(
            scheduled, ends - window_s, side="left"
        )
        # A window is good without failures and with its p99 in the band (an empty window: no
        # traffic to judge, counts as good; a window of failures only is bad).
        good = (bad_in_window == 0) & ((any_in_window == 0) | (np.nan_to_num(p99) <= band_ms))
        span = int(round(quiet_s / step))
        # bad_after[i]: a bad window in ends[i : i + span + 1].
        bad_cumulative = np.concatenate([[0], np.cumsum(~good)])
        for index in range(len(ends)):
            last = index + span
            if last >= len(ends):
                reason = f"the run ended before {quiet_s:g} s of good windows"
                break
            if bad_cumulative[last + 1] - bad_cumulative[index] == 0:
                recovery_s = float(ends[index] - start_s)
                break
    result: dict[str, Any] = {
        "requests_planned": planned,
        "requests_recorded": recorded,
        "requests_lost": lost,
        "requests_not_ok": int(not_ok.sum()),
        "requests_not_ok_after_fault": int(errors_after.sum()),
        "not_ok_by_outcome": {str(key): int(value) for key, value in counts.items()},
        "time_to_first_error_s": _none_if_nan(first_error),
        "time_to_first_ok_s": _none_if_nan(first_ok),
        "recovered": recovery_s is not None,
        "time_to_recover_s": _none_if_nan(recovery_s),
        "not_recovered_reason": reason if recovery_s is None else None,
        "pre_fault_band_p99_ms": _none_if_nan(band_ms),
        "peak_latency_ms": _none_if_nan(peak_ms),
        "recovery_rule": {
            "window_s": window_s,
            "quiet_s": quiet_s,
            "band_tolerance": band_tolerance,
        },
    }
    result.update(probe_figures(probes, start_s))
    return result


def probe_figures(probes: pd.DataFrame | None, start_s: float) -> dict[str, Any]:
    """What a /readyz probe saw after the fault: first failure, first success after it, and the
    number of failed probes."""
    figures: dict[str, Any] = {
        "readyz_first_failure_s": None,
        "readyz_back_s": None,
        "readyz_failed_probes": None,
        "livez_failed_probes": None,
    }
    if probes is None or not len(probes):
        return figures
    for path, key in (("/readyz", "readyz"), ("/livez", "livez")):
        rows = probes[(probes["path"] == path) & (probes["t_s"] >= start_s)].sort_values("t_s")
        failed = rows[~rows["ok"].astype(bool)]
        figures[f"{key}_failed_probes"] = int(len(failed))
        if key == "readyz" and len(failed):
            first = float(failed["t_s"].iloc[0])
            figures["readyz_first_failure_s"] = round(first - start_s, 3)
            back = rows[(rows["t_s"] > first) & rows["ok"].astype(bool)]
            if len(back):
                figures["readyz_back_s"] = round(float(back["t_s"].iloc[0]) - start_s, 3)
    return figures
