"""The results tree: every folder and file name the workflow, the jobs and the analysis share.

    <results_dir>/
      provenance/environment.json
      data/{payloads.csv, payload_token_lengths.csv, payload_token_lengths_summary.json}
      model/<model>/<runtime>/{provenance.json, files/, payload_probabilities.csv,
                               fidelity.json, inprocess_bench.csv}
      bentos/<variant>.json                     (the Bentos themselves: deploy.bentoml_home)
      images/{base.json, <variant>.json}          (the images themselves: the Docker daemon)
      tuning/{tuning.csv, tuned.json, bentos/<runtime>.json, t<i>/}
      calibration/<target>/<variant>/{steps.csv, capacity.json, step<i>/}
      runs/<target>/<variant>/<scenario>/rep<r>/{RUN_FILES}
      resilience/<target>/<variant>/<fault>/rep<r>/{RESILIENCE_FILES}
      tables/<name>.csv   figures/<name>.{png,pdf}   report.html   logs/   benchmarks/

Path methods take strings as well as numbers, so that the workflow can pass Snakemake
wildcards (`layout.run_dir("{target}", "{variant}", "{scenario}", "{rep}")`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A load test's folder (servebench.loadgen writes the first four and Locust's files).
SUMMARY = "summary.json"
REQUESTS = "requests.parquet"
PLAN = "plan.json"
RAW = "raw"  # the workers' per-request logs and status files
# A job's folder: the server's side, and the completion marker, written last.
SERVER_LOG = "server.log"
SERVER_METRICS = "server_metrics.csv"
RESOURCES = "resources.csv"
META = "meta.json"
# A resilience run adds these.
FAULTS = "faults.json"
PROBES = "probes.csv"
K3S_FACTS = "k3s.json"
DOCKER_FACTS = "docker.json"  # the docker target's container: state, restarts, CPU
# A calibration.
STEPS = "steps.csv"
CAPACITY = "capacity.json"

# What a finished scenario run leaves for the analysis: every one is a declared output of the
# workflow's loadtest rule, so deleting one reruns the run.
RUN_FILES = (SUMMARY, META, REQUESTS, SERVER_METRICS, RESOURCES)
RESILIENCE_FILES = (FAULTS, META, REQUESTS, PROBES)
CALIBRATION_FILES = (STEPS, CAPACITY)

# Model stage, per runtime.
MODEL_PROVENANCE = "provenance.json"
MODEL_FILES = "files"
PROBABILITIES = "payload_probabilities.csv"
FIDELITY = "fidelity.json"
INPROCESS_BENCH = "inprocess_bench.csv"

# The tuning stage.
TUNING = "tuning.csv"
TUNED = "tuned.json"

TABLE_NAMES = (
    "runs",
    "summary",
    "comparison",
    "ablation",
    "capacity",
    "tuning",
    "invalid_runs",
    "problems",
)
RESILIENCE_TABLE = "resilience"
FIGURE_FORMATS = ("png", "pdf")


def scenario_figure_names(scenario: str) -> list[str]:
    return [f"latency_cdf_{scenario}", f"timeline_{scenario}", f"server_{scenario}"]


def figure_names(scenarios: Iterable[str]) -> list[str]:
    """Base names (no extension) of the study's figures for these scenarios."""
    names = ["latency_percentiles", "latency_throughput", "interarrivals"]
    for scenario in scenarios:
        names += scenario_figure_names(scenario)
    return names + ["payload_tokens", "inprocess_bench", "tuning"]


def resilience_figure_names(faults: Iterable[str]) -> list[str]:
    """Base names of the resilience timelines, one per fault."""
    return [f"resilience_{fault}" for fault in faults]


@dataclass(frozen=True)
class Layout:
    """The results tree under `results_dir`."""

    results_dir: Path

    def __init__(self, results_dir: str | Path) -> None:
        object.__setattr__(self, "results_dir", Path(results_dir))

    @classmethod
    def of(cls, config: dict[str, Any]) -> Layout:
        return cls(config["results_dir"])

    def path(self, *parts: Any) -> Path:
        return self.results_dir.joinpath(*map(str, parts))

    # ------------------------------------------------------------------ inputs of the study
    @property
    def environment_json(self) -> Path:
        return self.path("provenance", "environment.json")

    @property
    def payloads_csv(self) -> Path:
        return self.path("data", "payloads.csv")

    @property
    def token_lengths_csv(self) -> Path:
        return self.path("data", "payload_token_lengths.csv")

    @property
    def token_summary_json(self) -> Path:
        return self.path("data", "payload_token_lengths_summary.json")

    def model_dir(self, model_name: str, runtime: str | None = None) -> Path:
        base = self.path("model", model_name)
        return base / runtime if runtime is not None else base

    def bento_record(self, variant: str) -> Path:
        return self.path("bentos", f"{variant}.json")

    @property
    def images_dir(self) -> Path:
        """The container images' records (servebench.deploy.images): base.json, <variant>.json."""
        return self.path("images")

    def image_record(self, variant: str) -> Path:
        return self.images_dir / f"{variant}.json"

    # ------------------------------------------------------------------ jobs
    def calibration_dir(self, target: str, variant: str) -> Path:
        return self.path("calibration", target, variant)

    def run_dir(self, target: str, variant: str, scenario: str, repetition: int | str) -> Path:
        return self.path("runs", target, variant, scenario, f"rep{repetition}")

    def resilience_dir(self, target: str, variant: str, fault: str, repetition: int | str) -> Path:
        return self.path("resilience", target, variant, fault, f"rep{repetition}")

    @property
    def tuning_dir(self) -> Path:
        return self.path("tuning")

    def log(self, *parts: str) -> Path:
        return self.path("logs", *parts)

    # ------------------------------------------------------------------ analysis
    @property
    def tables_dir(self) -> Path:
        return self.path("tables")

    def table(self, name: str) -> Path:
        return self.tables_dir / f"{name}.csv"

    @property
    def figures_dir(self) -> Path:
        return self.path("figures")

    def figure(self, name: str, extension: str) -> Path:
        return self.figures_dir / f"{name}.{extension}"

    @property
    def figure_manifest(self) -> Path:
        return self.figures_dir / "manifest.json"

    @property
    def report_html(self) -> Path:
        return self.path("report.html")

    @property
    def status_json(self) -> Path:
        """Whether the study produced what it planned (servebench.analysis.status)."""
        return self.path("status.json")

    @property
    def study_ok(self) -> Path:
        """Written only when the study's status has no problem: the last target of `all`."""
        return self.path("study.ok")

    @property
    def benchmarks_dir(self) -> Path:
        return self.path("benchmarks")
