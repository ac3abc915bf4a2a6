"""One job of the experiment: deploy a Bento, drive it with the load generator, tear it down.

Two kinds of job use this module:
- `calibrate`: an open-loop stepped ramp of offered rate against one variant; the highest rate
  that is sustained (achieved within tolerance, p99 within the SLO) is the variant's capacity.
- `run_scenario`: one (variant, scenario, repetition) of the matrix, with the repetition's
  seeded schedule, writing the load generator's files plus server.log, server_metrics.csv,
  resources.csv and meta.json.

A run that fails (server does not start, generator error) is not an exception for the
workflow: it is recorded as an invalid run with its reason, so the other runs go on and the
analysis lists it. `meta.json` is written last and atomically: its presence marks a finished
job. Interrupts (Ctrl-C, SIGTERM from Snakemake) propagate; the server is stopped on the way out.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import shutil
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servebench import experiment
from servebench.deploy.local import local_server, monitor
from servebench.provenance import environment, stable_hash, write_json

log = logging.getLogger(__name__)

# Leading seconds of each calibration step that are excluded from its statistics.
CALIBRATION_STEP_WARMUP_FRACTION = 0.2
# The ramp stops after this many consecutive unsustained steps.
CALIBRATION_FAILED_STEPS_TO_STOP = 2


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _loadgen_settings(config: dict[str, Any]) -> dict[str, Any]:
    from servebench.loadgen.runner import settings_from_config

    return settings_from_config(config)


class _LogLines(io.TextIOBase):
    """A text stream whose lines go to this module's log (the job's log file)."""

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                log.info("%s", line.strip())
        return len(text)


def _run_loadtest(**kwargs: Any) -> dict[str, Any]:
    """run_loadtest with its progress lines in the job's log instead of the console."""
    from servebench.loadgen.runner import run_loadtest

    with contextlib.redirect_stderr(_LogLines()):
        return run_loadtest(**kwargs)


def _clear(directory: Path) -> None:
    """Start a job from an empty folder: no file of an earlier, interrupted attempt survives."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


# ------------------------------------------------------------- deployment target (deploy.target)


@contextlib.contextmanager
def deployed(config: dict[str, Any], record: dict[str, Any], out: Path) -> Iterator[Any]:
    """The variant's server for the block, by deploy.target: `local` (bentoml serve here) or
    `k3s` (servebench.deploy.k3s); both give `.url` and tear down on exit."""
    if config["deploy"]["target"] == "k3s":
        from servebench.deploy.k3s import k3s_server

        with k3s_server(config, record, out) as server:
            yield server
        return
    with local_server(
        record["tag"],
        bentoml_home=record["bentoml_home"],
        log_path=out / "server.log",
        cpus=config["cpus"]["server"],
        ready_timeout_s=config["deploy"]["ready_timeout_s"],
    ) as server:
        yield server


def monitored(config: dict[str, Any], server: Any, out: Path) -> contextlib.AbstractContextManager:
    """server_metrics.csv and resources.csv of the target's server."""
    if config["deploy"]["target"] == "k3s":
        from servebench.deploy.k3s import k3s_monitor

        return k3s_monitor(server, out)
    return monitor(server, out)


def calibration_rates_rps(calibration: dict[str, Any]) -> list[float]:
    """The offered rates of the ramp: start, start x factor, ... (max_steps of them)."""
    start = float(calibration["start_rate_rps"])
    factor = float(calibration["rate_factor"])
    return [round(start * factor**step, 3) for step in range(int(calibration["max_steps"]))]


def step_row(offered_rate_rps: float, summary: dict[str, Any], calibration: dict[str, Any]) -> dict:
    """One row of steps.csv from a step's load-test summary."""
    counts = summary.get("counts", {})
    measured = sum(counts.values())
    achieved = summary.get("throughput_rps") or 0.0
    # Compare with the rate the seeded schedule really offered in the step's window: a short
    # Poisson step offers noticeably more or less than its nominal rate.
    realized_offered = summary.get("offered_rate_rps") or offered_rate_rps
    p99 = summary.get("latency_p99_ms")
    tolerance = float(calibration["achieved_rate_tolerance"])
    sustained = (
        achieved >= realized_offered * (1.0 - tolerance)
        and p99 is not None
        and p99 <= float(calibration["slo_p99_ms"])
    )
    return {
        "offered_rate_rps": offered_rate_rps,
        "realized_offered_rate_rps": realized_offered,
        "achieved_rate_rps": achieved,
        "p50_ms": summary.get("latency_p50_ms"),
        "p99_ms": p99,
        "service_p99_ms": summary.get("service_p99_ms"),
        "rejection_rate": counts.get("rejected", 0) / measured if measured else math.nan,
        "error_rate": (counts.get("failed", 0) + counts.get("timeout", 0)) / measured
        if measured
        else math.nan,
        "generator_valid": bool(summary.get("valid")),
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
    _clear(out)
    calibration = config["calibration"]
    record = read_json(bento_record_path)
    settings = _loadgen_settings(config)
    steps: list[dict[str, Any]] = []
    failed_in_a_row = 0
    with deployed(config, record, out) as server:
        for index, rate in enumerate(calibration_rates_rps(calibration)):
            duration_s = float(calibration["step_duration_s"])
            summary = _run_loadtest(
                host=server.url,
                out_dir=out / f"step{index}",
                seed=experiment.derived_seed(config["seed"], "calibration", index),
                arrival="exponential",
                rate_rps=rate,
                duration_s=duration_s,
                warmup_s=duration_s * CALIBRATION_STEP_WARMUP_FRACTION,
                payloads=payloads_path,
                **settings,
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
            if failed_in_a_row >= CALIBRATION_FAILED_STEPS_TO_STOP:
                break
    capacity = capacity_from_steps(steps)
    pd.DataFrame(steps).to_csv(out / "steps.csv", index=False)
    result = {
        "variant": variant,
        "target": config["deploy"]["target"],
        "capacity_rps": capacity,
        "slo_p99_ms": calibration["slo_p99_ms"],
        "achieved_rate_tolerance": calibration["achieved_rate_tolerance"],
        "steps_run": len(steps),
        # The ramp ended while still sustaining: the capacity is only a lower bound.
        "capacity_is_lower_bound": bool(steps) and steps[-1]["sustained"],
        "bento_tag": record["tag"],
        "note": None
        if capacity is not None
        else "no step was sustained: lower calibration.start_rate_rps or relax the SLO",
    }
    write_json(out / "capacity.json", result)
    return result


def _meta(
    config: dict[str, Any],
    spec: experiment.RunSpec,
    record: dict[str, Any],
    seed: int,
    rate_rps: float | None,
) -> dict[str, Any]:
    env = environment()
    provenance = record.get("model_provenance", {})
    return {
        "target": spec.target,
        "variant": spec.variant,
        "scenario": spec.scenario,
        "repetition": spec.repetition,
        "seed": seed,
        "rate_rps": rate_rps,
        "scenario_config": config["scenarios"][spec.scenario],
        "variant_settings": record.get("settings"),
        "bento_tag": record.get("tag"),
        "model_name": provenance.get("name") or provenance.get("model_name"),
        "weights": provenance.get("weights"),
        "runtime": (record.get("settings") or {}).get("runtime"),
        "config_hash": stable_hash(config),
        "cpus": config["cpus"],
        "git_commit": env["git_commit"],
        "packages": env["packages"],
        "cpu": env["cpu"],
        "python": env["python"],
    }


def run_scenario(
    config: dict[str, Any],
    spec: experiment.RunSpec,
    bento_record_path: str | Path,
    payloads_path: str | Path,
    out_dir: str | Path,
    reference_capacity_path: str | Path | None = None,
) -> dict[str, Any]:
    """One run of the matrix. Returns the summary; a failed run returns an invalid summary."""
    out = Path(out_dir)
    _clear(out)
    scenario = config["scenarios"][spec.scenario]
    record = read_json(bento_record_path)
    seed = experiment.run_seed(config, spec.scenario, spec.repetition)
    rate_rps: float | None = None
    started = time.time()
    try:
        capacity = None
        if reference_capacity_path is not None:
            capacity = read_json(reference_capacity_path).get("capacity_rps")
        rate_rps = experiment.scenario_rate_rps(scenario, capacity)
        with deployed(config, record, out) as server, monitored(config, server, out):
            summary = _run_loadtest(
                host=server.url,
                out_dir=out,
                seed=seed,
                arrival=scenario["arrival"],
                rate_rps=rate_rps,
                cv=scenario.get("cv"),
                shape=scenario.get("shape"),
                duration_s=scenario.get("duration_s"),
                requests=scenario.get("requests"),
                warmup_s=scenario.get("warmup_s", 5),
                payloads=payloads_path,
                **_loadgen_settings(config),
            )
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a failed run is data, not a stopped workflow
        log.error("run %s failed: %s\n%s", out, error, traceback.format_exc())
        summary = {
            "valid": False,
            "invalid_reasons": [f"run failed: {type(error).__name__}: {error}"],
            "error": f"{type(error).__name__}: {error}",
        }
        write_json(out / "summary.json", summary)
    meta = _meta(config, spec, record, seed, rate_rps)
    meta["wall_time_s"] = round(time.time() - started, 3)
    meta["valid"] = bool(summary.get("valid"))
    meta["invalid_reasons"] = summary.get("invalid_reasons", [])
    write_json(out / "meta.json", meta)
    return summary
