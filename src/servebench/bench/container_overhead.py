"""The container's overhead: each variant calibrated on the local target and on the docker target,
back to back, with the study's own calibration (servebench.jobs.calibrate).

Run by hand, after the Bentos exist (`snakemake --cores 2 bentos`; their images are built
first when missing: a Docker daemon must answer, containers/dockerd.sh); it holds the machine for as long as 2 x (variants) calibrations take (about
15-30 minutes with the default profile on 2 cores): take the heavy lock.

    flock /tmp/servebench-heavy.lock .venv/bin/servebench bench container-overhead
    .venv/bin/servebench bench container-overhead --configfile .test/config.yaml   # tiny

For each variant of experiment.variants (or --variants), in that order: the local target's
calibration, then the docker target's (the same Bento in its image, run with the K3s pod's
settings and pinned to the same cpus.server), so that the two of a variant are minutes apart.
Each calibration goes to <results>/benchmarks/container_overhead/<target>/<variant>/ (the
study's own results/calibration/ are left alone). Writes
<results>/benchmarks/container_overhead.csv: one row per variant with both targets'
saturation throughput, capacity at the SLO and unloaded latency, and docker / local ratios.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servebench.bench import bench_parser
from servebench.config import load_config
from servebench.errors import UserError
from servebench.layout import Layout
from servebench.provenance import cpu_info, git_commit

TARGETS = ("local", "docker")
ANSWERS = ("saturation_rps", "capacity_rps", "unloaded_p50_ms", "unloaded_p99_ms")
FIELDS = [
    "variant",
    *(f"{target}_{answer}" for answer in ANSWERS for target in TARGETS),
    "saturation_docker_over_local",
    "capacity_docker_over_local",
    "local_capacity_unattainable",
    "docker_capacity_unattainable",
    "local_steps",
    "docker_steps",
    "local_search_s",
    "docker_search_s",
    "slo_p99_ms",
    "server_cpus",
    "loadgen_cpus",
    "cpu_model",
    "git_commit",
    "measured_at",
]


def _ratio(docker: float | None, local: float | None) -> float | None:
    if docker is None or not local:
        return None
    return round(docker / local, 4)


def comparison_row(variant: str, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One variant's row of container_overhead.csv from its two capacity.json contents."""
    local, docker = answers["local"], answers["docker"]
    row: dict[str, Any] = {"variant": variant}
    for answer in ANSWERS:
        for target in TARGETS:
            row[f"{target}_{answer}"] = answers[target].get(answer)
    row["saturation_docker_over_local"] = _ratio(
        docker.get("saturation_rps"), local.get("saturation_rps")
    )
    row["capacity_docker_over_local"] = _ratio(
        docker.get("capacity_rps"), local.get("capacity_rps")
    )
    for target in TARGETS:
        row[f"{target}_capacity_unattainable"] = answers[target].get("capacity_unattainable")
        row[f"{target}_steps"] = answers[target].get("steps_run")
        row[f"{target}_search_s"] = answers[target].get("search_s")
    row["slo_p99_ms"] = local.get("slo_p99_ms")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    parser.add_argument("--configfile", action="append", default=[], type=Path, metavar="FILE")
    parser.add_argument("--variants", help="comma-separated (default: experiment.variants)")
    parser.add_argument("--out", type=Path, help="CSV (default: <results>/benchmarks/...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from servebench.jobs.calibrate import calibrate

    config = load_config(*args.configfile)
    layout = Layout.of(config)
    variants = args.variants.split(",") if args.variants else config["experiment"]["variants"]
    unknown = [name for name in variants if name not in config["variants"]]
    if unknown:
        raise UserError(f"no variant named {', '.join(unknown)} under `variants`")
    missing = [
        str(path)
        for path in [layout.payloads_csv, *(layout.bento_record(name) for name in variants)]
        if not path.is_file()
    ]
    if missing:
        raise UserError(
            f"missing {', '.join(missing)}: make them first (`snakemake --cores 2 bentos`)"
        )
    # The images of the Bentos (built, or reused when up to date) before anything is measured.
    from servebench.deploy.images import ensure_bento_image

    k3s = config["deploy"]["k3s"]
    for variant in variants:
        record = json.loads(layout.bento_record(variant).read_text(encoding="utf-8"))
        ensure_bento_image(
            record,
            layout.results_dir,
            repository=k3s["image_repository"],
            registry=k3s["image_registry"],
        )
    work = layout.benchmarks_dir / "container_overhead"
    out_csv = args.out or layout.benchmarks_dir / "container_overhead.csv"
    rows = []
    for variant in variants:
        answers = {}
        for target in TARGETS:
            run_config = copy.deepcopy(config)
            run_config["deploy"]["target"] = target
            started = time.monotonic()
            answers[target] = calibrate(
                run_config,
                variant,
                layout.bento_record(variant),
                layout.payloads_csv,
                work / target / variant,
            )
            logging.info(
                "%s on %s: saturation %s req/s, capacity %s req/s (%.0f s)",
                variant,
                target,
                answers[target].get("saturation_rps"),
                answers[target].get("capacity_rps"),
                time.monotonic() - started,
            )
        rows.append(comparison_row(variant, answers))
    common = {
        "server_cpus": " ".join(map(str, config["cpus"]["server"])),
        "loadgen_cpus": " ".join(map(str, config["cpus"]["loadgen"])),
        "cpu_model": cpu_info()["model"],
        "git_commit": git_commit(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **common})
    for row in rows:
        print(json.dumps({key: row[key] for key in FIELDS[:11]}))
    print(f"wrote {out_csv}")
    return 0
