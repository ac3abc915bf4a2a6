"""Reading the results tree for the analysis: run records (valid, invalid, failed, missing,
with their reasons), per-request latencies, calibrations. Never raises for a missing or
broken file: it becomes a reason or a problem the report lists."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.layout import CAPACITY, META, REQUESTS, RUN_FILES, STEPS, SUMMARY, Layout
from servebench.matrix import RunSpec
from servebench.records import RunSummary


@dataclass
class RunRecord:
    """One run of the matrix as found on disk."""

    spec: RunSpec
    path: Path
    status: str  # valid | invalid | failed | missing
    reasons: list[str]
    summary: RunSummary | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.spec.target, self.spec.variant, self.spec.scenario)


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return None, f"{path.name} is unreadable: {error}"
    if not isinstance(value, dict):
        return None, f"{path.name} is not a JSON object"
    return value, None


def load_run(spec: RunSpec, results_dir: str | Path) -> RunRecord:
    """Read a run folder; never raises for missing or broken files (they become reasons). Only
    a run whose completion marker (meta.json, written last) exists counts as finished."""
    path = spec.path(results_dir)
    data, summary_error = _read_json(path / SUMMARY)
    meta, meta_error = _read_json(path / META)
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    reasons: list[str] = [error for error in (summary_error, meta_error) if error]
    if meta is None:
        if data is None and not reasons:
            return RunRecord(spec, path, "missing", ["not run: no meta.json"], None, {}, missing)
        reasons.append(f"unfinished: no {META} (the job's completion marker)")
        return RunRecord(spec, path, "failed", _unique(reasons), None, {}, missing)
    if data is None:
        reasons.append(f"no {SUMMARY} (the run did not finish)")
        reasons += [str(reason) for reason in meta.get("invalid_reasons") or []]
        return RunRecord(spec, path, "failed", _unique(reasons), None, meta, missing)
    summary = RunSummary.from_dict(data)
    reasons += [str(reason) for reason in summary.invalid_reasons]
    if summary.error:
        status = "failed"
        if not any(summary.error in reason for reason in reasons):
            reasons.append(summary.error)
    elif not summary.valid:
        status = "invalid"
        if not reasons:
            reasons.append("marked invalid without a reason")
    else:
        status = "valid"
    return RunRecord(spec, path, status, _unique(reasons), summary, meta, missing)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def load_runs(specs: Iterable[RunSpec], results_dir: str | Path) -> list[RunRecord]:
    return [load_run(spec, results_dir) for spec in specs]


def run_metrics(summary: RunSummary) -> dict[str, float]:
    """Derived per-run numbers: measured and ok request counts, failure, error and rejection
    rates (defined once, by RunSummary)."""
    rates = {
        "failure_rate": summary.failure_rate,
        "error_rate": summary.error_rate,
        "rejection_rate": summary.rejection_rate,
    }
    return {
        "n_measured": summary.n_measured,
        "n_ok": int(summary.counts.get("ok", 0)),
        **{name: math.nan if rate is None else rate for name, rate in rates.items()},
    }


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}_{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, default=str)
    else:
        out[prefix] = value


def read_request_latencies(run_dir: Path) -> dict[str, np.ndarray] | None:
    """latency_ms and service_ms of the measured (not warm-up), ok requests; None if the run
    has no readable requests.parquet."""
    path = Path(run_dir) / REQUESTS
    if not path.is_file():
        return None
    try:
        table = pd.read_parquet(path, columns=["latency_ms", "service_ms", "outcome", "in_warmup"])
    except Exception:  # noqa: BLE001 - a broken file is reported, not fatal
        return None
    keep = (table["outcome"] == "ok") & ~table["in_warmup"].astype(bool)
    return {
        "latency": table.loc[keep, "latency_ms"].to_numpy(dtype=float),
        "service": table.loc[keep, "service_ms"].to_numpy(dtype=float),
    }


def read_requests(run_dir: Path) -> pd.DataFrame | None:
    """The whole requests.parquet of a run, or None."""
    path = Path(run_dir) / REQUESTS
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # noqa: BLE001
        return None


def pooled_latencies(
    records: Sequence[RunRecord], problems: list[str] | None = None
) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """Per (target, variant, scenario): the measured ok latencies of its valid runs, pooled."""
    pooled: dict[tuple[str, str, str], dict[str, list[np.ndarray]]] = {}
    for record in records:
        if not record.valid:
            continue
        latencies = read_request_latencies(record.path)
        if latencies is None:
            if problems is not None:
                problems.append(
                    f"{record.path}: no readable requests.parquet; the run counts in the "
                    "repetition-level statistics but not in the request-level test"
                )
            continue
        group = pooled.setdefault(record.key, {"latency": [], "service": []})
        for kind, values in latencies.items():
            group[kind].append(values)
    return {
        key: {kind: np.concatenate(parts) if parts else np.array([]) for kind, parts in g.items()}
        for key, g in pooled.items()
    }


def read_calibration(
    results_dir: str | Path, target: str, variant: str
) -> tuple[dict[str, Any] | None, pd.DataFrame | None, list[str]]:
    """(capacity.json, steps.csv, problems) of one variant's calibration."""
    folder = Layout(results_dir).calibration_dir(target, variant)
    problems = []
    capacity, error = _read_json(folder / CAPACITY)
    if capacity is None:
        problems.append(error or f"{folder}: no capacity.json (calibration not run)")
    steps = None
    if (folder / STEPS).is_file():
        try:
            steps = pd.read_csv(folder / STEPS)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{folder / 'steps.csv'}: unreadable ({exc})")
    else:
        problems.append(f"{folder}: no steps.csv")
    return capacity, steps, problems


def bento_records(results_dir: str | Path, variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each variant's Bento record (what it serves: runtime, knobs, model directory); variants
    without one are left out."""
    records = {}
    for variant in variants:
        record, _ = _read_json(Layout(results_dir).bento_record(variant))
        if record is not None:
            records[variant] = record
    return records
