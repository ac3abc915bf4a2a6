"""The experiment matrix: which jobs exist, where they live, their seeds and their order.

A run is one (target, variant, scenario, repetition). Every variant of a repetition gets the
same seed, hence the identical schedule and payload order; variants interleave A B B A across
repetitions so that slow drift of the machine does not favour one of them. Resilience runs
are (target, resilience variant, fault, repetition), ordered the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servebench.fault_kinds import resilience_faults
from servebench.layout import (
    CALIBRATION_FILES,
    FIDELITY,
    INPROCESS_BENCH,
    META,
    MODEL_PROVENANCE,
    RUN_FILES,
    TUNED,
    TUNING,
    Layout,
)
from servebench.settings import TuningSettings


@dataclass(frozen=True)
class RunSpec:
    target: str
    variant: str
    scenario: str
    repetition: int

    def path(self, results_dir: str | Path) -> Path:
        return Layout(results_dir).run_dir(
            self.target, self.variant, self.scenario, self.repetition
        )


@dataclass(frozen=True)
class FaultRunSpec:
    target: str
    variant: str  # a resilience variant (resilience.variants), not necessarily a Bento variant
    fault: str  # a fault name (resilience.faults)
    repetition: int

    def path(self, results_dir: str | Path) -> Path:
        return Layout(results_dir).resilience_dir(
            self.target, self.variant, self.fault, self.repetition
        )


def derived_seed(master_seed: int, *parts: object) -> int:
    """A seed for one purpose, stable across machines and Python versions (no hash())."""
    text = "/".join(str(part) for part in (master_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def run_seed(config: dict[str, Any], scenario: str, repetition: int) -> int:
    """The schedule seed of a repetition: the same for every variant."""
    return derived_seed(config["seed"], "scenario", scenario, "rep", repetition)


def fault_seed(config: dict[str, Any], fault: str, repetition: int) -> int:
    """The schedule seed of a fault run: the same for every variant of (fault, repetition)."""
    return derived_seed(config["seed"], "resilience", fault, "rep", repetition)


def abba_order(variants: list[str], repetition: int) -> list[str]:
    """Variants in the order they run in one repetition: forward, then reversed, and so on."""
    return list(variants) if repetition % 2 == 0 else list(reversed(variants))


def run_matrix(config: dict[str, Any]) -> list[RunSpec]:
    """Every run of the experiment, in execution order (scenario, repetition, ABBA variants)."""
    target = config["deploy"]["target"]
    variants = config["experiment"]["variants"]
    runs: list[RunSpec] = []
    for scenario in config["experiment"]["scenarios"]:
        for repetition in range(config["scenarios"][scenario]["repetitions"]):
            for variant in abba_order(variants, repetition):
                runs.append(RunSpec(target, variant, scenario, repetition))
    return runs


def resilience_matrix(config: dict[str, Any]) -> list[FaultRunSpec]:
    """Every resilience run (none when resilience.enabled is false), fault by fault, variants
    interleaved A B B A across repetitions; on a target without fault kinds (external), one
    probes-only run per variant and repetition."""
    resilience = config["resilience"]
    if not resilience["enabled"]:
        return []
    target = config["deploy"]["target"]
    variants = list(resilience["variants"])
    specs = []
    for fault in resilience_faults(config):
        for repetition in range(int(resilience["repetitions"])):
            for variant in abba_order(variants, repetition):
                specs.append(FaultRunSpec(target, variant, fault, repetition))
    return specs


def resilience_fault_names(config: dict[str, Any]) -> list[str]:
    """The faults that get a timeline figure: those that run (none when resilience is off)."""
    if not config["resilience"]["enabled"]:
        return []
    return resilience_faults(config)


def analysis_inputs(
    config: dict[str, Any], model_name: str, runtimes: list[str]
) -> dict[str, list[str]]:
    """The files the analysis rules read (workflow/rules/analysis.smk), each a declared output
    of the job that writes it: every file of each run of the matrix (layout.RUN_FILES), the
    calibrations, the token lengths and the model stage's outputs. With
    `analysis.existing_runs_only`, only the runs whose completion marker (meta.json) exists,
    and only the other files on disk."""
    layout = Layout.of(config)
    target = config["deploy"]["target"]
    existing_only = bool(config["analysis"]["existing_runs_only"])
    runs = []
    for spec in run_matrix(config):
        folder = spec.path(layout.results_dir)
        if existing_only and not (folder / META).is_file():
            continue
        runs += [str(folder / name) for name in RUN_FILES]
    calibration = [
        str(layout.calibration_dir(target, variant) / name)
        for variant in config["experiment"]["variants"]
        for name in CALIBRATION_FILES
    ]
    files = {
        "runs": runs,
        "calibration": calibration,
        "token_lengths": [str(layout.token_lengths_csv), str(layout.token_summary_json)],
        "inprocess_bench": [
            str(layout.model_dir(model_name, runtime) / INPROCESS_BENCH) for runtime in runtimes
        ],
        "model": [
            str(layout.model_dir(model_name, runtime) / name)
            for runtime in runtimes
            for name in (MODEL_PROVENANCE, FIDELITY)
        ],
        # What each variant serves (the tuned variant's knobs come from the tuning).
        "bentos": [
            str(layout.bento_record(variant)) for variant in config["experiment"]["variants"]
        ],
        "tuning": [str(layout.tuning_dir / name) for name in (TUNING, TUNED)]
        if TuningSettings.of(config).tunes(config)
        else [],
    }
    if target == "external":  # nothing of this project's model or Bentos is served
        files.update(token_lengths=[], inprocess_bench=[], model=[], bentos=[])
    if existing_only:
        files = {
            key: paths if key == "runs" else [p for p in paths if Path(p).is_file()]
            for key, paths in files.items()
        }
    return files
