"""What every job shares: a clean folder, the job's log, the Bento record, run metadata."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from servebench.cpus import ForeignCpu
from servebench.layout import PROBES, REQUESTS, RESOURCES, SERVER_METRICS, SUMMARY
from servebench.loadgen.runner import run_loadtest
from servebench.provenance import environment, stable_hash, write_json
from servebench.records import RunSummary

log = logging.getLogger("servebench.jobs")


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def deployment_record(
    config: dict[str, Any], variant: str, bento_record_path: str | Path | None
) -> dict[str, Any]:
    """What a job deploys and records in meta.json: the variant's Bento record (bento.smk), or,
    on the external target, where nothing is built, a record of the variant's URL."""
    if bento_record_path is not None:
        return read_json(bento_record_path)
    if config["deploy"]["target"] != "external":
        raise ValueError(
            f"no Bento record of {variant!r}: deploy.target {config['deploy']['target']!r} "
            "serves the variant's Bento"
        )
    return {"tag": None, "url": config["deploy"]["external"]["urls"][variant], "settings": {}}


def clear_dir(directory: Path) -> None:
    """Start a job from an empty folder: no file of an earlier, interrupted attempt survives."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


class _LogLines(io.TextIOBase):
    """A text stream whose lines go to the jobs' log (the job's log file)."""

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                log.info("%s", line.strip())
        return len(text)


def logged_loadtest(**kwargs: Any) -> RunSummary:
    """run_loadtest with its progress lines in the job's log instead of the console."""
    with contextlib.redirect_stderr(_LogLines()):
        return run_loadtest(**kwargs)


def write_missing_outputs(out_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Empty files (the right columns, no rows) for the declared outputs a failed job did not
    write, so that the workflow keeps the failed run as data; returns the names written."""
    from servebench.deploy.monitor import Monitor
    from servebench.faults.probes import PROBE_COLUMNS
    from servebench.loadgen.summary import empty_request_table

    headers = {
        SERVER_METRICS: Monitor.METRICS_HEADER,
        RESOURCES: Monitor.RESOURCES_HEADER,
        PROBES: PROBE_COLUMNS,
    }
    written = []
    for name in names:
        path = out_dir / name
        if path.exists():
            continue
        if name == REQUESTS:
            empty_request_table().to_parquet(path, index=False)
        elif name in headers:
            path.write_text(",".join(headers[name]) + "\n", encoding="utf-8")
        else:
            continue
        written.append(name)
    return written


def measured_loadtest(
    measured_cpus: tuple[int, ...],
    foreign_cpu_max_percent: float,
    min_requests: int,
    **kwargs: Any,
) -> RunSummary:
    """A load test that owns the machine: what else used the measured cores (the server's and
    the generator's) during it, and too few measured requests, make it invalid, with the
    reason; summary.json says so too."""
    with ForeignCpu(measured_cpus) as foreign:
        summary = logged_loadtest(**kwargs)
    summary.foreign_cpu_percent = round(foreign.percent, 2)
    if foreign.percent > foreign_cpu_max_percent:
        summary.invalid_reasons.append(
            f"other processes used {foreign.percent:.0f}% of the measured cores "
            f"{list(measured_cpus)} (at most {foreign_cpu_max_percent:g}%): a measurement owns "
            "the machine"
        )
    if summary.n_measured < min_requests:
        summary.invalid_reasons.append(
            f"only {summary.n_measured} measured requests (at least {min_requests}: "
            "measurement.min_requests)"
        )
    summary.valid = not summary.invalid_reasons
    write_json(Path(kwargs["out_dir"]) / SUMMARY, summary.to_dict())
    return summary


def reference_saturation_rps(path: str | Path | None) -> float | None:
    """The reference variant's saturation throughput (its capacity.json), None without one:
    what scenario utilizations are fractions of."""
    return read_json(path).get("saturation_rps") if path is not None else None


def run_meta(
    config: dict[str, Any], record: dict[str, Any], identity: dict[str, Any]
) -> dict[str, Any]:
    """meta.json of a job (written last: it marks a finished job): what ran (`identity`: the
    target, variant, scenario or fault, repetition, seed, rate ...), the Bento and its model,
    the configuration's hash, the pinning and the machine's environment."""
    env = environment()
    provenance = record.get("model_provenance", {})
    settings = record.get("settings") or {}
    return {
        **identity,
        "variant_settings": settings,
        "bento_tag": record.get("tag"),
        # The external target's server (it has no Bento).
        **({"url": record["url"]} if record.get("url") else {}),
        "model_name": provenance.get("name") or provenance.get("model_name"),
        "weights": provenance.get("weights"),
        "runtime": settings.get("runtime"),
        "config_hash": stable_hash(config),
        "cpus": config["cpus"],
        "git_commit": env["git_commit"],
        "packages": env["packages"],
        "cpu": env["cpu"],
        "python": env["python"],
    }
