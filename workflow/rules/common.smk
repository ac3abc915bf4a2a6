# Shared helpers of the workflow: config validation at start, paths, the list of final targets.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package is installed in the venv; this keeps a plain source checkout working too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from servebench.config import config_errors

_problems = config_errors(config)
if _problems:
    raise WorkflowError(
        "invalid configuration (see config/schema.yaml):\n  - "
        + "\n  - ".join(_problems)
    )
# Fills in the schema's defaults for keys the config leaves out.
validate(config, "../../config/schema.yaml")

RESULTS = config["results_dir"]
CONDA_ENV = "../../envs/servebench.yaml"


def results(*parts):
    """A path under the configured results folder."""
    return str(Path(RESULTS, *parts))


def all_targets():
    """Everything `snakemake all` produces; each stage adds its final outputs here."""
    return (
        [results("provenance", "environment.json")]
        + model_targets()
        + bento_targets()
        + calibration_targets()
        + run_targets()
        + RESILIENCE_TARGETS
        + ANALYSIS_TARGETS
        + REPORT_TARGETS
    )


from servebench.model import ModelUnavailableError, resolve_model

# Which model the config means (local dir, HF cache, hub, or the synthetic fallback), decided
# at start (fast offline), so that every stage knows results/model/<MODEL.name>/ in advance.
try:
    MODEL = resolve_model(config["model"])
except ModelUnavailableError as error:
    raise WorkflowError(f"model: {error}") from None
if MODEL.kind == "synthetic":
    print(
        f"servebench: WARNING: using the SYNTHETIC model {MODEL.name} (random weights: "
        f"latency figures are meaningful, accuracy figures are not): {MODEL.reason}",
        file=sys.stderr,
    )


def model_dir(*parts):
    """results/model/<model>/...: the resolved model's runtime directories."""
    return results("model", MODEL.name, *parts)


from servebench.model import payload_source_path
from servebench.runtime import CUDA_RUNTIMES

# Runtimes of the model stage; pytorch fp32 is the fidelity reference: always prepared.
MODEL_RUNTIMES = ["pytorch"] + [
    runtime for runtime in config["model"]["runtimes"] if runtime != "pytorch"
]
MODEL_RUNTIME_PATTERN = "|".join(re.escape(runtime) for runtime in MODEL_RUNTIMES)
# Each runtime is built from another one.
MODEL_RUNTIME_SOURCE = {
    "onnx": "pytorch",
    "onnx-int8": "onnx",
    "pytorch-cuda-fp16": "pytorch",
    "onnx-cuda-fp16": "onnx",
}
if set(MODEL_RUNTIMES) & set(CUDA_RUNTIMES):
    import torch

    if not torch.cuda.is_available():
        raise WorkflowError(
            "model.runtimes lists CUDA runtimes "
            f"({', '.join(sorted(set(MODEL_RUNTIMES) & set(CUDA_RUNTIMES)))}) "
            "but this machine has no CUDA device: remove them from model.runtimes"
        )


def model_targets():
    """The model stage's final outputs (part of `all`)."""
    targets = [
        results("data", "payloads.csv"),
        results("data", "payload_token_lengths.csv"),
        results("data", "payload_token_lengths_summary.json"),
    ]
    for runtime in MODEL_RUNTIMES:
        for name in ("provenance.json", "fidelity.json", "inprocess_bench.csv"):
            targets.append(model_dir(runtime, name))
    return targets


def payload_source_input(wildcards):
    """The local file behind data.source (none for hf:)."""
    path = payload_source_path(config["data"]["source"])
    return [str(path)] if path is not None else []


# Files a variant's Bento is built from (bento.smk): a change rebuilds the Bentos.
BENTO_SOURCES = [
    "services/sentiment/service.py",
    "services/sentiment/sentiment_inference.py",
    "services/sentiment/bentofile.template.yaml",
    "src/servebench/runtime.py",
]


def bento_runtime(wildcards):
    """The runtime a variant's Bento serves."""
    return config["variants"][wildcards.variant]["runtime"]


def bento_targets():
    """The Bento record of every variant of the experiment (part of `all`)."""
    return [
        results("bentos", f"{name}.json") for name in config["experiment"]["variants"]
    ]


from servebench.experiment import run_matrix, run_seed, scenario_needs_capacity

TARGETS = ["local", "k3s"]


wildcard_constraints:
    target="|".join(TARGETS),
    variant="|".join(re.escape(name) for name in config["variants"]),
    scenario="|".join(re.escape(name) for name in config["scenarios"]),
    rep=r"\d+",


RUN_MATRIX = run_matrix(config)


def run_path(name):
    """A file of one run: results/runs/<target>/<variant>/<scenario>/rep<r>/<name>."""
    return results("runs", "{target}", "{variant}", "{scenario}", "rep{rep}", name)


def run_targets():
    """meta.json of every run of the matrix (written last: marks a finished run)."""
    return [str(spec.path(RESULTS) / "meta.json") for spec in RUN_MATRIX]


def calibration_targets():
    """capacity.json of every variant of the experiment."""
    target = config["deploy"]["target"]
    return [
        results("calibration", target, variant, "capacity.json")
        for variant in config["experiment"]["variants"]
    ]


def reference_capacity(wildcards):
    """The reference variant's capacity, for scenarios whose rate is relative to it."""
    if not scenario_needs_capacity(config["scenarios"][wildcards.scenario]):
        return []
    return results(
        "calibration",
        wildcards.target,
        config["experiment"]["reference_variant"],
        "capacity.json",
    )


def k3s_deployment(wildcards):
    """A K3s run's cluster settings, so that changing them reruns it; none for local runs."""
    if wildcards.target != "k3s":
        return {}
    from servebench.deploy.k3s import k3s_settings

    if "rvariant" in wildcards.keys():
        return k3s_settings(
            config, RESILIENCE["variants"][wildcards.rvariant]["variant"]
        )
    return k3s_settings(config, wildcards.variant)


def run_priority(wildcards):
    """Earlier runs of the matrix get higher priority, so runs go in ABBA order."""
    for index, spec in enumerate(RUN_MATRIX):
        if (spec.target, spec.variant, spec.scenario, str(spec.repetition)) == (
            wildcards.target,
            wildcards.variant,
            wildcards.scenario,
            wildcards.rep,
        ):
            return 50 - index / (len(RUN_MATRIX) + 1)
    return 0
