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
# deploy.target external: servers that already run, one URL per variant; no model stage, no
# Bento, nothing deployed (docs/external.md).
EXTERNAL = config["deploy"]["target"] == "external"


def results(*parts):
    """A path under the configured results folder."""
    return str(Path(RESULTS, *parts))


def all_targets():
    """Everything `snakemake all` produces; each stage adds its final outputs here."""
    return (
        [str(LAYOUT.environment_json)]
        + model_targets()
        + TUNING_TARGETS
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
if MODEL.kind == "synthetic" and not EXTERNAL:
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
    """The model stage's final outputs (part of `all`); the payloads only on the external
    target, whose servers serve a model of their own."""
    if EXTERNAL:
        return [str(LAYOUT.payloads_csv)]
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


from servebench.settings import TuningSettings

TUNING = TuningSettings.of(config)
# The stage runs (local target, tuning.enabled) and, unless pinned, its winner is the tuned
# variant's Bento: then the variant's runtime is known only after the tuning.
TUNING_RUNTIMES = [runtime for runtime in TUNING.runtimes if runtime in MODEL_RUNTIMES]
TUNING_TARGETS = [str(LAYOUT.tuning_dir / layout.TUNED)] if TUNING.tunes(config) else []
TUNED_VARIANT = TUNING.variant if TUNING.tunes(config) and not TUNING.pin else None


def bento_runtime(wildcards):
    """The runtime a variant's Bento serves."""
    return config["variants"][wildcards.variant]["runtime"]


def bento_runtime_inputs(name):
    """A variant's model files (`name`: provenance or fidelity verdict); every candidate
    runtime's for the tuned variant, whose runtime the tuning chooses."""

    def inputs(wildcards):
        if wildcards.variant == TUNED_VARIANT:
            return [model_dir(runtime, name) for runtime in TUNING_RUNTIMES]
        return [model_dir(bento_runtime(wildcards), name)]

    return inputs


def bento_requirements(wildcards):
    """The Bento's pinned packages (every candidate runtime's for the tuned variant)."""
    runtimes = (
        TUNING_RUNTIMES
        if wildcards.variant == TUNED_VARIANT
        else [bento_runtime(wildcards)]
    )
    return [f"envs/bento-{runtime}.txt" for runtime in runtimes]


def bento_targets():
    """The Bento record of every variant of the experiment (part of `all`); none on the
    external target."""
    if EXTERNAL:
        return []
    return [str(LAYOUT.bento_record(name)) for name in config["experiment"]["variants"]]


from servebench.fault_kinds import TARGETS
from servebench.matrix import run_matrix, run_seed
from servebench.settings import DockerTarget, K3sTarget, ScenarioSettings
from servebench.settings import study_variants


wildcard_constraints:
    target="|".join(TARGETS),
    variant="|".join(re.escape(name) for name in study_variants(config)),
    scenario="|".join(re.escape(name) for name in config["scenarios"]),
    rep=r"\d+",


RUN_MATRIX = run_matrix(config)


def run_path(name):
    """A file of one run: results/runs/<target>/<variant>/<scenario>/rep<r>/<name>."""
    return str(LAYOUT.run_dir("{target}", "{variant}", "{scenario}", "{rep}") / name)


def run_targets():
    """Every declared file of every run of the matrix (layout.RUN_FILES): asked for by `all`,
    a deleted one plans its run again (Snakemake looks for missing intermediate files only
    among the inputs of jobs that run)."""
    return [
        str(spec.path(RESULTS) / name)
        for spec in RUN_MATRIX
        for name in layout.RUN_FILES
    ]


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


def _bento_variant(wildcards):
    """The Bento variant a run serves (a resilience variant names one)."""
    if "rvariant" in wildcards.keys():
        return config["resilience"]["variants"][wildcards.rvariant]["variant"]
    return wildcards.variant


def k3s_deployment(wildcards):
    """A K3s run's cluster settings, or a docker run's pod settings (its container's flags
    come from the same rendered manifest): changing them reruns it. None for local runs.
    """
    if wildcards.target == "k3s":
        return K3sTarget.of(config, _bento_variant(wildcards)).as_dict()
    if wildcards.target == "docker":
        return DockerTarget.of(config, _bento_variant(wildcards)).as_dict()
    return {}


def container_inputs(wildcards):
    """What a run on the docker target deploys besides its Bento: the variant's image (rule
    image) and the pod spec its container's flags are read from; nothing elsewhere.
    """
    if wildcards.target != "docker":
        return []
    return [
        str(LAYOUT.image_record(_bento_variant(wildcards))),
        "k3s/base/deployment.yaml",
    ]


def bento_input(variant):
    """The Bento record a job of `variant` deploys; none on the external target (the job then
    records the variant's URL instead)."""
    return [] if EXTERNAL else str(LAYOUT.bento_record(variant))


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
