"""Calibration: an open-loop stepped ramp of offered rate against one variant; the highest rate
that is sustained (achieved within tolerance, p99 within the SLO) is the variant's capacity.

Writes steps.csv (one row per step), capacity.json and one step<i>/ folder per step.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from servebench.deploy import deployed
from servebench.jobs.common import clear_dir, logged_loadtest, read_json
from servebench.layout import CAPACITY, STEPS
from servebench.matrix import derived_seed
from servebench.provenance import write_json
from servebench.records import RunSummary
from servebench.settings import CalibrationSettings, LoadgenSettings, deploy_target

log = logging.getLogger("servebench.jobs")

# Leading seconds of each calibration step that are excluded from its statistics.
STEP_WARMUP_FRACTION = 0.2
# The ramp stops after this many consecutive unsustained steps.
FAILED_STEPS_TO_STOP = 2


def calibration_rates_rps(calibration: CalibrationSettings) -> list[float]:
    """The offered rates of the ramp: start, start x factor, ... (max_steps of them)."""
    return [
        round(calibration.start_rate_rps * calibration.rate_factor**step, 3)
        for step in range(calibration.max_steps)
    ]


def step_row(
    offered_rate_rps: float, summary: RunSummary, calibration: CalibrationSettings
) -> dict[str, Any]:
    """One row of steps.csv from a step's load-test summary: the one definition of a
    *sustained* step."""
    achieved = summary.throughput_rps or 0.0
    # Compare with the rate the seeded schedule really offered in the step's window: a short
    # Poisson step offers noticeably more or less than its nominal rate.
    realized_offered = summary.offered_rate_rps or offered_rate_rps
    p99 = summary.latency_p99_ms
    sustained = (
        achieved >= realized_offered * (1.0 - calibration.achieved_rate_tolerance)
        and p99 is not None
        and p99 <= calibration.slo_p99_ms
    )
    error_rate, rejection_rate = summary.error_rate, summary.rejection_rate
    return {
        "offered_rate_rps": offered_rate_rps,
        "realized_offered_rate_rps": realized_offered,
        "achieved_rate_rps": achieved,
        "p50_ms": summary.latency_p50_ms,
        "p99_ms": p99,
        "service_p99_ms": summary.service_p99_ms,
        "rejection_rate": math.nan if rejection_rate is None else rejection_rate,
        "error_rate": math.nan if error_rate is None else error_rate,
        "generator_valid": summary.valid,
        "sustained": bool(sustained),
    }


def capacity_from_steps(steps: list[dict[str, Any]]) -> float | None:
    """The highest sustained offered rate, or None when no step was sustained."""
    sustained = [step["offered_rate_rps"] for step in steps if step["sustained"]]
    return max(sustained) if sustained else None


def calibrate(
    config: dict[str, Any],
    variant: str,
    bento_record_path: str | Path,
    payloads_path: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Measure one variant's capacity; writes steps.csv, capacity.json and step<i>/ folders."""
    import pandas as pd

    out = Path(out_dir)
    clear_dir(out)
    calibration = CalibrationSettings.of(config)
    generator = LoadgenSettings.of(config)
    target = deploy_target(config, variant)
    record = read_json(bento_record_path)
    steps: list[dict[str, Any]] = []
    failed_in_a_row = 0
    with deployed(target, record, out) as deployment:
        for index, rate in enumerate(calibration_rates_rps(calibration)):
            duration_s = calibration.step_duration_s
            summary = logged_loadtest(
                host=deployment.url,
                out_dir=out / f"step{index}",
                seed=derived_seed(config["seed"], "calibration", index),
                arrival="exponential",
                rate_rps=rate,
                duration_s=duration_s,
                warmup_s=duration_s * STEP_WARMUP_FRACTION,
                payloads=payloads_path,
                generator=generator,
            )
            row = step_row(rate, summary, calibration)
            steps.append(row)
            log.info(
                "calibration %s step %d: offered %.2f req/s, achieved %.2f req/s, p99 %s ms, %s",
                variant,
                index,
                rate,
                row["achieved_rate_rps"],
                None if row["p99_ms"] is None else round(row["p99_ms"], 1),
                "sustained" if row["sustained"] else "NOT sustained",
            )
            failed_in_a_row = 0 if row["sustained"] else failed_in_a_row + 1
            if failed_in_a_row >= FAILED_STEPS_TO_STOP:
                break
    capacity = capacity_from_steps(steps)
    pd.DataFrame(steps).to_csv(out / STEPS, index=False)
    result = {
        "variant": variant,
        "target": target.name,
        "capacity_rps": capacity,
        "slo_p99_ms": calibration.slo_p99_ms,
        "achieved_rate_tolerance": calibration.achieved_rate_tolerance,
        "steps_run": len(steps),
        # The ramp ended while still sustaining: the capacity is only a lower bound.
        "capacity_is_lower_bound": bool(steps) and steps[-1]["sustained"],
        "bento_tag": record["tag"],
        "note": None
        if capacity is not None
        else "no step was sustained: lower calibration.start_rate_rps or relax the SLO",
    }
    write_json(out / CAPACITY, result)
    return result
