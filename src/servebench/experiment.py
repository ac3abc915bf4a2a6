"""The experiment matrix: which runs exist, where they live, their seeds and their order.

A run is one (target, variant, scenario, repetition). Every variant of a repetition gets the
same seed, hence the identical schedule and payload order; variants interleave A B B A across
repetitions so that slow drift of the machine does not favour one of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    target: str
    variant: str
    scenario: str
    repetition: int

    def path(self, results_dir: str | Path) -> Path:
        return (
            Path(results_dir)
            / "runs"
            / self.target
            / self.variant
            / self.scenario
            / f"rep{self.repetition}"
        )


def derived_seed(master_seed: int, *parts: object) -> int:
    """A seed for one purpose, stable across machines and Python versions (no hash())."""
    text = "/".join(str(part) for part in (master_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def run_seed(config: dict[str, Any], scenario: str, repetition: int) -> int:
    """The schedule seed of a repetition: the same for every variant."""
    return derived_seed(config["seed"], "scenario", scenario, "rep", repetition)


def abba_order(variants: list[str], repetition: int) -> list[str]:
    """Variants in the order they run in one repetition: forward, then reversed, and so on."""
    return list(variants) if repetition % 2 == 0 else list(reversed(variants))


def run_matrix(config: dict[str, Any]) -> list[RunSpec]:
    """Every run of the experiment, in execution order (scenario, repetition, ABBA variants)."""
    target = config["deploy"]["target"]
    variants = config["experiment"]["variants"]
    runs: list[RunSpec] = []
    for scenario in config["experiment"]["scenarios"]:
        repetitions = config["scenarios"][scenario].get("repetitions", 3)
        for repetition in range(repetitions):
            for variant in abba_order(variants, repetition):
                runs.append(RunSpec(target, variant, scenario, repetition))
    return runs


def calibration_dir(results_dir: str | Path, target: str, variant: str) -> Path:
    return Path(results_dir) / "calibration" / target / variant


def scenario_needs_capacity(scenario: dict[str, Any]) -> bool:
    return "rate_of_baseline_capacity" in scenario


def scenario_rate_rps(scenario: dict[str, Any], reference_capacity_rps: float | None) -> float:
    """The scenario's mean arrival rate: absolute, or a fraction of the reference capacity."""
    if "rate_rps" in scenario:
        return float(scenario["rate_rps"])
    if reference_capacity_rps is None or reference_capacity_rps <= 0:
        raise ValueError(
            "the scenario's rate is relative to the reference variant's capacity, "
            "but no positive capacity was measured"
        )
    return float(scenario["rate_of_baseline_capacity"]) * reference_capacity_rps
