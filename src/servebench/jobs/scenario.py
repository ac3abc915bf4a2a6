"""One run of the matrix: deploy the variant, send the repetition's seeded schedule, tear down.

Writes the load generator's files (requests.parquet, summary.json, ...) plus server.log,
server_metrics.csv, resources.csv and, last, meta.json into the run's folder.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from servebench.deploy import deployed
from servebench.jobs.common import (
    clear_dir,
    deployment_record,
    measured_loadtest,
    reference_saturation_rps,
    run_meta,
    write_missing_outputs,
)
from servebench.layout import META, RUN_FILES, SUMMARY
from servebench.matrix import RunSpec, run_seed
from servebench.provenance import write_json
from servebench.records import RunSummary
from servebench.settings import LoadgenSettings, ScenarioSettings, deploy_target

log = logging.getLogger("servebench.jobs")


def run_scenario(
    config: dict[str, Any],
    spec: RunSpec,
    bento_record_path: str | Path | None,
    payloads_path: str | Path,
    out_dir: str | Path,
    reference_capacity_path: str | Path | None = None,
) -> RunSummary:
    """One run of the matrix. Returns the summary; a failed run returns an invalid summary.
    `bento_record_path`: None on the external target (no Bento)."""
    out = Path(out_dir)
    clear_dir(out)
    scenario = ScenarioSettings.of(config, spec.scenario)
    generator = LoadgenSettings.of(config)
    target = deploy_target(config, spec.variant)
    record = deployment_record(config, spec.variant, bento_record_path)
    seed = run_seed(config, spec.scenario, spec.repetition)
    rate_rps: float | None = None
    notes: list[str] = []
    earlier_attempts: list[list[str]] = []  # each invalid attempt's reasons, in order
    started = time.time()
    try:
        rate_rps = scenario.offered_rate_rps(reference_saturation_rps(reference_capacity_path))
        measurement = config["measurement"]
        min_requests = int(measurement["min_requests"])
        # At a low rate the schedule grows until it holds enough measured requests.
        duration_s = (
            scenario.duration_for(rate_rps, min_requests, seed) if scenario.duration_s else None
        )
        max_attempts = int(measurement.get("max_attempts", 1))
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                clear_dir(out)
            with deployed(target, record, out) as deployment, deployment.monitored(out):
                summary = measured_loadtest(
                    target.cpus + generator.cpus,
                    float(measurement["foreign_cpu_max_percent"]),
                    min_requests,
                    host=deployment.url,
                    out_dir=out,
                    seed=seed,
                    arrival=scenario.arrival,
                    rate_rps=rate_rps,
                    cv=scenario.cv,
                    shape=scenario.shape,
                    duration_s=duration_s,
                    requests=scenario.requests,
                    warmup_s=scenario.warmup_s,
                    payloads=payloads_path,
                    generator=generator,
                )
            notes = list(getattr(deployment, "notes", []))  # what the target could not measure
            # Invalid is the generator's verdict on its own run (servebench.loadgen.summary):
            # the server's failures are data and never make a run invalid.
            if summary.valid:
                break
            if attempt < max_attempts:
                earlier_attempts.append(list(summary.invalid_reasons))
                log.warning(
                    "run %s, attempt %d of %d invalid (%s): measuring again",
                    out, attempt, max_attempts, "; ".join(summary.invalid_reasons),
                )  # fmt: skip
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a failed run is data, not a stopped workflow
        log.error("run %s failed: %s\n%s", out, error, traceback.format_exc())
        text = f"{type(error).__name__}: {error}"
        summary = RunSummary.failed(f"run failed: {text}", error=text)
        write_json(out / SUMMARY, summary.to_dict())
    write_missing_outputs(out, RUN_FILES)
    identity = {
        "kind": "scenario",
        "target": spec.target,
        "variant": spec.variant,
        "scenario": spec.scenario,
        "repetition": spec.repetition,
        "seed": seed,
        "rate_rps": rate_rps,
        "utilization": scenario.utilization,
        "scenario_config": config["scenarios"][spec.scenario],
    }
    meta = run_meta(config, record, identity)
    meta["wall_time_s"] = round(time.time() - started, 3)
    meta["valid"] = summary.valid
    meta["invalid_reasons"] = summary.invalid_reasons
    if notes:
        meta["deployment_notes"] = notes
    # The reasons of each invalid attempt before the one kept (whose are invalid_reasons).
    meta["invalid_attempts"] = earlier_attempts
    write_json(out / META, meta)
    return summary
