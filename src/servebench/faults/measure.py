"""What a fault did to the service, measured from the per-request log and the probes.

All times are on the schedule's clock (seconds since the schedule's start t0):
- requests not ok by outcome, time to the first error and to the first ok answer after the
  fault, peak corrected latency, requests lost (scheduled but never recorded: must be 0);
- time to recover: a rolling window is *good* when no request in it failed and the p99 of
  the corrected latency of its ok requests (scheduled in [w - window_s, w)) is within the
  pre-fault band (the highest rolling p99 before the fault times (1 + band_tolerance)). The
  search starts at the first bad window after the injection (a fault whose errors begin late,
  such as a K3s rollout whose old pod stops only once the new one is ready, is not "recovered"
  before it showed), and the recovery must hold to the end of the run: T is the end of the last
  bad window, provided at least `quiet_s` of good windows follow it. None ("not recovered")
  when the run ends first. Without any bad window after the injection, T = 0.
- relapse: the service was good for `quiet_s` after the first failure and then failed again
  (errors, or the band broken): `relapsed`, the number of relapses, the first recovery and the
  time of the first relapse are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass
class Recovery:
    """Where the good windows hold: indexes into the windows' ends, then times relative to the
    injection (`to_times`)."""

    at: int | None = None  # recovered from here to the end of the run
    first: int | None = None  # the first recovery (== at without a relapse)
    first_bad: int | None = None
    first_relapse: int | None = None
    relapses: int = 0
    reason: str | None = None
    at_s: float | None = None
    first_at_s: float | None = None
    first_bad_s: float | None = None
    first_relapse_s: float | None = None

    def to_times(self, ends_s: np.ndarray, start_s: float) -> None:
        for index_name, time_name in (
            ("at", "at_s"),
            ("first", "first_at_s"),
            ("first_bad", "first_bad_s"),
            ("first_relapse", "first_relapse_s"),
        ):
            index = getattr(self, index_name)
            if index is not None:
                setattr(self, time_name, float(ends_s[index] - start_s))


def find_recovery(good: np.ndarray, span: int) -> Recovery:
    """Recovery on a sequence of windows (good or not, one per step from the injection on):
    from the first bad window, the first stretch of `span` + 1 good windows is a recovery; a
    bad window after a recovery is a relapse; the run recovered only when its last bad window is
    followed by such a stretch, which then reaches the end of the run."""
    bad = np.flatnonzero(~good)
    if not len(bad):  # the fault never showed in the windows
        if len(good) > span:
            return Recovery(at=0, first=0)
        return Recovery(reason="the run ended before {quiet_s} s of good windows")
    result = Recovery(first_bad=int(bad[0]))
    # Stretches of good windows between bad ones, after the first bad window: (first, length).
    starts = bad[:-1] + 1
    lengths = bad[1:] - bad[:-1] - 1
    stretches = [(int(a), int(n)) for a, n in zip(starts, lengths, strict=True) if n > span]
    tail_start = int(bad[-1]) + 1
    tail_length = len(good) - tail_start
    result.relapses = len(stretches)
    if stretches:
        result.first = stretches[0][0]
        result.first_relapse = stretches[0][0] + stretches[0][1]
    if tail_length > span:
        result.at = tail_start
        if result.first is None:
            result.first = tail_start
    elif result.relapses:
        result.reason = "relapsed, and the run ended before {quiet_s} s of good windows after it"
    else:
        result.reason = "the run ended before {quiet_s} s of good windows"
    return result


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
    # Unknown when the plan is: a lost request is never assumed away.
    lost = planned - recorded + int((outcome == "missing").sum()) if planned is not None else None
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

    recovery: Recovery = Recovery(reason="no ok request before the fault: no pre-fault band")
    if band_ms is not None:
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
        recovery = find_recovery(good, int(round(quiet_s / step)))
        if recovery.reason is not None:
            recovery.reason = recovery.reason.format(quiet_s=f"{quiet_s:g}")
        recovery.to_times(ends, start_s)
    result: dict[str, Any] = {
        "requests_planned": planned,
        "requests_recorded": recorded,
        "requests_lost": lost,
        "requests_not_ok": int(not_ok.sum()),
        "requests_not_ok_after_fault": int(errors_after.sum()),
        "not_ok_by_outcome": {str(key): int(value) for key, value in counts.items()},
        "time_to_first_error_s": _none_if_nan(first_error),
        "time_to_first_ok_s": _none_if_nan(first_ok),
        "recovered": recovery.at_s is not None,
        "time_to_recover_s": _none_if_nan(recovery.at_s),
        "not_recovered_reason": recovery.reason if recovery.at_s is None else None,
        "relapsed": recovery.relapses > 0,
        "relapses": recovery.relapses,
        "first_recovery_s": _none_if_nan(recovery.first_at_s),
        "first_relapse_s": _none_if_nan(recovery.first_relapse_s),
        "time_to_first_bad_window_s": _none_if_nan(recovery.first_bad_s),
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
