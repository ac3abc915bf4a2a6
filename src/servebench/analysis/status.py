"""Did the study produce what it planned? One line per cause, with what to change.

`study_status` reads the tables (and the resilience table): a variant whose calibration found
no saturation throughput, a (scenario, variant) with fewer than two valid repetitions (no
comparison is possible), a resilience stage without a valid run. The workflow writes it to
results/status.json, the report opens with a banner of its problems, and the last rule of
`all` fails with them, so that `make all` ends non-zero when the study did not measure.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from servebench.layout import RESILIENCE_TABLE, Layout
from servebench.matrix import resilience_matrix
from servebench.provenance import write_json

# Fewest valid repetitions of a (scenario, variant) for a comparison.
MIN_VALID_REPETITIONS = 2


def _top_reasons(reasons: pd.Series, count: int = 2) -> str:
    counted = Counter(
        part.strip() for text in reasons.dropna().astype(str) for part in text.split(" | ") if part
    )
    return "; ".join(f"{reason} ({n}x)" for reason, n in counted.most_common(count))


def study_status(
    config: dict[str, Any], tables: dict[str, pd.DataFrame], resilience: pd.DataFrame | None
) -> dict[str, Any]:
    problems: list[str] = []
    capacity = tables["capacity"]
    reference = config["experiment"]["reference_variant"]
    for record in capacity.to_dict("records"):
        variant = record["variant"]
        if pd.isna(record.get("saturation_rps")):
            note = record.get("note") or "no capacity.json"
            problems.append(
                f"calibration of {variant}: no saturation throughput ({note}); "
                f"see results/logs/calibration/ and the server log"
                + ("; every scenario's rate is a fraction of it" if variant == reference else "")
            )
    runs = tables["runs"]
    n_runs = len(runs)
    n_valid = int(runs["valid"].astype(bool).sum()) if n_runs else 0
    if n_runs and n_valid == 0:
        problems.append(f"no valid run of {n_runs}: {_top_reasons(runs['invalid_reasons'])}")
    elif n_runs:
        for (scenario, variant), group in runs.groupby(["scenario", "variant"], sort=False):
            valid = int(group["valid"].astype(bool).sum())
            # A study of one repetition planned no comparison; lost runs that break one count.
            if valid < min(len(group), MIN_VALID_REPETITIONS):
                problems.append(
                    f"scenario {scenario}, variant {variant}: {valid} of {len(group)} runs valid "
                    f"(a comparison needs {MIN_VALID_REPETITIONS}): "
                    f"{_top_reasons(group['invalid_reasons'])}"
                )
    n_resilience = n_resilience_valid = 0
    if resilience is not None and len(resilience):
        n_resilience = len(resilience)
        n_resilience_valid = int(resilience["valid"].astype(str).str.lower().eq("true").sum())
        if n_resilience_valid == 0:
            problems.append(
                f"no valid resilience run of {n_resilience}: {_top_reasons(resilience['problems'])}"
            )
    return {
        "ok": not problems,
        "problems": problems,
        "runs": n_runs,
        "valid_runs": n_valid,
        "resilience_runs": n_resilience,
        "valid_resilience_runs": n_resilience_valid,
    }


def write_study_status(config: dict[str, Any]) -> dict[str, Any]:
    """results/status.json from the tables on disk (layout.TABLE_NAMES, resilience.csv)."""
    layout = Layout.of(config)

    def read(name: str) -> pd.DataFrame:
        path = layout.table(name)
        try:
            return pd.read_csv(path) if path.is_file() else pd.DataFrame()
        except pd.errors.EmptyDataError:
            return pd.DataFrame()

    tables = {name: read(name) for name in ("runs", "capacity")}
    resilience = read(RESILIENCE_TABLE) if resilience_matrix(config) else None
    status = study_status(config, tables, resilience)
    write_json(layout.status_json, status)
    return status
