# Shared helpers of the workflow: config validation at start, paths, the list of final targets.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The package is installed in the venv; this keeps a plain source checkout working too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from servebench.config import apply_defaults, config_errors

# Every rule of the configuration (the schema and the rules across keys, resilience's
# included): the same check as `servebench check-config`.
_problems = config_errors(config)
if _problems:
    raise WorkflowError(
        "invalid configuration (see config/schema.yaml):\n  - "
        + "\n  - ".join(_problems)
    )
# The schema's defaults for every key the config leaves out (defaults live there only).
apply_defaults(config)

from servebench import layout
from servebench.layout import Layout

LAYOUT = Layout.of(config)
RESULTS = config["results_dir"]
CONDA_ENV = "../../envs/servebench.yaml"


def results(*parts):
    """A path under the configured results folder."""
    return str(Path(RESULTS, *parts))


def all_targets():
    """Everything `snakemake all` produces; each stage adds its final outputs here."""
    return (
        [str(LAYOUT.environment_json)]
        + model_targets()
        + bento_targets()
        + calibration_targets()
        + run_targets()
        + RESILIENCE_TARGETS
        + ANALYSIS_TARGETS
        + REPORT_TARGETS
        + CHECK_TARGETS
    )


from servebench.model.resolve import ModelUnavailableError, resolve_model

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
    return str(LAYOUT.model_dir(MODEL.name).joinpath(*parts))


from servebench.config import payload_source_path
from servebench.model.runtime import CUDA_RUNTIMES
from servebench.settings import model_runtimes

# Runtimes of the model stage; pytorch fp32 is the fidelity reference: always prepared.
MODEL_RUNTIMES = model_runtimes(config)
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
        str(LAYOUT.payloads_csv),
        str(LAYOUT.token_lengths_csv),
        str(LAYOUT.token_summary_json),
    ]
    for runtime in MODEL_RUNTIMES:
        for name in (layout.MODEL_PROVENANCE, layout.FIDELITY, layout.INPROCESS_BENCH):
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
    "src/servebench/model/runtime.py",
]


def bento_runtime(wildcards):
    """The runtime a variant's Bento serves."""
    return config["variants"][wildcards.variant]["runtime"]


def bento_targets():
    """The Bento record of every variant of the experiment (part of `all`)."""
    return [str(LAYOUT.bento_record(name)) for name in config["experiment"]["variants"]]


from servebench.fault_kinds import TARGETS
from servebench.matrix import run_matrix, run_seed
from servebench.settings import K3sTarget, ScenarioSettings


wildcard_constraints:
    target="|".join(TARGETS),
    variant="|".join(re.escape(name) for name in config["variants"]),
    scenario="|".join(re.escape(name) for name in config["scenarios"]),
    rep=r"\d+",


RUN_MATRIX = run_matrix(config)


def run_path(name):
    """A file of one run: results/runs/<target>/<variant>/<scenario>/rep<r>/<name>."""
    return str(LAYOUT.run_dir("{target}", "{variant}", "{scenario}", "{rep}") / name)


def run_targets():
    """meta.json of every run of the matrix (written last: marks a finished run)."""
    return [str(spec.path(RESULTS) / layout.META) for spec in RUN_MATRIX]


def calibration_path(target, variant, name):
    return str(LAYOUT.calibration_dir(target, variant) / name)


def calibration_targets():
    """capacity.json of every variant of the experiment."""
    return [
        calibration_path(config["deploy"]["target"], variant, layout.CAPACITY)
        for variant in config["experiment"]["variants"]
    ]


def reference_capacity_path(target):
    return calibration_path(
        target, config["experiment"]["reference_variant"], layout.CAPACITY
    )


def reference_capacity(wildcards):
    """The reference variant's capacity, for scenarios whose rate is relative to it."""
    if not ScenarioSettings.of(config, wildcards.scenario).needs_reference:
        return []
    return reference_capacity_path(wildcards.target)


def k3s_deployment(wildcards):
    """A K3s run's cluster settings, so that changing them reruns it; none for local runs."""
    if wildcards.target != "k3s":
        return {}
    if "rvariant" in wildcards.keys():
        variant = config["resilience"]["variants"][wildcards.rvariant]["variant"]
        return K3sTarget.of(config, variant).as_dict()
    return K3sTarget.of(config, wildcards.variant).as_dict()


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


def resilience_path(name):
    return str(
        LAYOUT.resilience_dir("{target}", "{rvariant}", "{fault}", "{rep}") / name
    )


def resilience_capacity(wildcards):
    """The reference capacity, when the load's rate is relative to it."""
    from servebench.settings import ResilienceSettings

    run = ResilienceSettings.of(config, wildcards.rvariant, wildcards.fault)
    return reference_capacity_path(wildcards.target) if run.needs_reference else []
