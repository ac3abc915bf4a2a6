"""results/tables/resilience.csv and one timeline figure per fault, from the resilience runs'
faults.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from servebench.analysis.figures import resilience_timeline
from servebench.layout import FAULTS, resilience_figure_names
from servebench.matrix import resilience_fault_names, resilience_matrix

TABLE_COLUMNS = [
    "target",
    "variant",
    "bento_variant",
    "restart",
    "fault",
    "kind",
    "repetition",
    "rate_rps",
    "start_s",
    "end_s",
    "injected",
    "requests_planned",
    "requests_lost",
    "requests_not_ok",
    "not_ok_by_outcome",
    "time_to_first_error_s",
    "time_to_first_ok_s",
    "recovered",
    "time_to_recover_s",
    "relapsed",
    "first_relapse_s",
    "pre_fault_band_p99_ms",
    "peak_latency_ms",
    "readyz_first_failure_s",
    "readyz_back_s",
    "readyz_failed_probes",
    "valid",
    "problems",
    "run_dir",
]


def resilience_table(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per resilience run (per fault of it) from its faults.json."""
    rows = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / FAULTS
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data.get("faults", []):
            row = {key: data.get(key) for key in ("target", "variant", "bento_variant")}
            row.update(
                restart=data.get("restart"),
                fault=data.get("fault"),
                repetition=data.get("repetition"),
                rate_rps=data.get("rate_rps"),
                valid=data.get("valid"),
                problems="; ".join(data.get("problems", [])),
                run_dir=str(run_dir),
            )
            for key in TABLE_COLUMNS:
                if key in entry and key not in ("fault",):
                    row[key] = entry[key]
            row["not_ok_by_outcome"] = ", ".join(
                f"{k}: {v}" for k, v in sorted((entry.get("not_ok_by_outcome") or {}).items())
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def resilience_outputs(
    config: dict[str, Any], table_path: str | Path, figures_dir: str | Path
) -> dict[str, Any]:
    """results/tables/resilience.csv and one timeline figure per fault (every variant's first
    repetition in it): resilience_<fault>.{png,pdf}."""
    results_dir = Path(config["results_dir"])
    specs = resilience_matrix(config)
    table = resilience_table([spec.path(results_dir) for spec in specs])
    table_path = Path(table_path)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_path, index=False, float_format="%.6g")
    written = {}
    for fault in resilience_fault_names(config):
        dirs = [
            spec.path(results_dir) for spec in specs if spec.fault == fault and spec.repetition == 0
        ]
        written[fault] = [
            str(p)
            for p in resilience_timeline(
                dirs, Path(figures_dir) / resilience_figure_names([fault])[0]
            )
        ]
    return {"table": str(table_path), "figures": written}
