"""Typed settings, built once from a checked configuration at a job's boundary.

The raw configuration dict stops at the jobs (servebench.jobs) and the commands: they build
these small, frozen settings, and every layer below takes only what it needs from them. Each
`of(config, ...)` reads keys without defaults of its own: defaults live in the schema
(config/schema.yaml), filled in by `servebench.config.apply_defaults`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from servebench.arrivals import duration_holding
from servebench.fault_kinds import PROBES_ONLY


@dataclass(frozen=True)
class LoadgenSettings:
    """`loadgen` and `cpus.loadgen`: the open-loop generator's knobs."""

    endpoint: str
    max_in_flight: int
    overflow: str
    timeout_s: float
    workers: int
    validity: dict[str, float]
    cpus: tuple[int, ...]

    @classmethod
    def of(cls, config: dict[str, Any]) -> LoadgenSettings:
        loadgen = config["loadgen"]
        return cls(
            endpoint=loadgen["endpoint"],
            max_in_flight=int(loadgen["max_in_flight"]),
            overflow=loadgen["overflow_policy"],
            timeout_s=float(loadgen["request_timeout_s"]),
            workers=int(loadgen["workers"]),
            validity=dict(loadgen["validity"]),
            cpus=tuple(config["cpus"]["loadgen"]),
        )

    @classmethod
    def with_defaults(cls, **given: Any) -> LoadgenSettings:
        """The schema's defaults (servebench.config.schema_defaults) with `given` over them."""
        from servebench.config import apply_defaults

        defaults = cls.of(apply_defaults({}))
        if "cpus" in given:
            given["cpus"] = tuple(given["cpus"] or ())
        return dataclasses.replace(defaults, **given)

    def loadtest_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of servebench.loadgen.runner.run_loadtest these fix."""
        return {
            "endpoint": self.endpoint,
            "max_in_flight": self.max_in_flight,
            "overflow": self.overflow,
            "timeout_s": self.timeout_s,
            "workers": self.workers,
            "validity": dict(self.validity),
            "cpus": list(self.cpus),
        }


@dataclass(frozen=True)
class ScenarioSettings:
    """One scenario (`scenarios.<name>`): its arrival law, rate, length and repetitions."""

    name: str
    arrival: str
    cv: float | None
    shape: float | None
    rate_rps: float | None  # absolute, or None when a utilization of the reference variant
    utilization: float | None  # a fraction of the reference variant's saturation throughput
    duration_s: float | None
    requests: int | None
    warmup_s: float
    repetitions: int

    @classmethod
    def of(cls, config: dict[str, Any], name: str) -> ScenarioSettings:
        scenario = config["scenarios"][name]
        return cls(
            name=name,
            arrival=scenario["arrival"],
            cv=scenario.get("cv"),
            shape=scenario.get("shape"),
            rate_rps=scenario.get("rate_rps"),
            utilization=scenario.get("utilization"),
            duration_s=scenario.get("duration_s"),
            requests=scenario.get("requests"),
            warmup_s=float(scenario["warmup_s"]),
            repetitions=int(scenario["repetitions"]),
        )

    @property
    def needs_reference(self) -> bool:
        """The rate is a fraction of the reference variant's saturation throughput."""
        return self.rate_rps is None

    def offered_rate_rps(self, reference_saturation_rps: float | None) -> float:
        """The scenario's mean arrival rate: absolute, or a utilization of the reference's
        saturation throughput (which exists on any machine, unlike an SLO capacity)."""
        if self.rate_rps is not None:
            return float(self.rate_rps)
        if reference_saturation_rps is None or reference_saturation_rps <= 0:
            raise ValueError(
                "the scenario's rate is a utilization of the reference variant's saturation "
                "throughput, but its calibration measured none"
            )
        assert self.utilization is not None
        return float(self.utilization) * reference_saturation_rps

    def duration_for(self, rate_rps: float, min_requests: int, seed: int) -> float:
        """The schedule's length: the configured one, longer when the rate is too low for
        `min_requests` measured requests (exactly as long as the seeded schedule needs)."""
        assert self.duration_s is not None
        holding_s = duration_holding(
            min_requests,
            after_s=self.warmup_s,
            arrival=self.arrival,
            seed=seed,
            rate_rps=rate_rps,
            cv=self.cv,
            shape=self.shape,
        )
        return max(float(self.duration_s), holding_s)


@dataclass(frozen=True)
class CalibrationSettings:
    """`calibration`: the search for saturation throughput and capacity at the SLO
    (servebench.jobs.calibrate)."""

    slo_p99_ms: float
    achieved_rate_tolerance: float
    max_error_rate: float
    min_step_requests: int
    slo_verdict_requests: int
    min_step_duration_s: float
    step_warmup_s: float
    unloaded_requests: int
    start_utilization: float
    ramp_factor: float
    bracket_precision: float
    max_steps: int
    slo_min_utilization: float

    @classmethod
    def of(cls, config: dict[str, Any]) -> CalibrationSettings:
        calibration = config["calibration"]
        return cls(
            **{key: calibration[key] for key in cls.__dataclass_fields__},
        )


def model_runtimes(config: dict[str, Any]) -> list[str]:
    """The model stage's runtimes: pytorch fp32, the fidelity reference, always and first."""
    return ["pytorch"] + [r for r in config["model"]["runtimes"] if r != "pytorch"]


# Variants whose names start so are measured beside the tuned one (README's ablation): the
# tuning screens them too, so the chosen configuration is at least as good as each of them.
def batching_dispatcher(batching: dict[str, Any]) -> str:
    """The batcher of a variant's `batching` settings: "off", "adaptive" (BentoML's) or
    "greedy" (the service's own; services/sentiment). A Bento built before `dispatcher`
    existed batches adaptively."""
    if not batching.get("enabled"):
        return "off"
    return str(batching.get("dispatcher", "adaptive"))


COMPARED_PREFIX = "ablation-"
# The targets whose servers run on this machine's server cores, where the tuning's local
# measurements hold.
TUNED_TARGETS = ("local", "docker")


@dataclass(frozen=True)
class TuningSettings:
    """`tuning`: the search for the tuned variant's service knobs (servebench.jobs.tune)."""

    enabled: bool
    variant: str
    pin: bool
    budget_s: float
    runtimes: tuple[str, ...]
    runtime_ceiling_share: float
    max_latency_of_slo: tuple[float, ...]
    max_batch_sizes: tuple[int, ...]
    sub_batch_sizes: tuple[int, ...]
    probe_duration_s: float

    @classmethod
    def of(cls, config: dict[str, Any]) -> TuningSettings:
        tuning = config["tuning"]
        return cls(
            enabled=bool(tuning["enabled"]),
            variant=tuning["variant"],
            pin=bool(tuning["pin"]),
            budget_s=float(tuning["budget_s"]),
            runtimes=tuple(tuning["runtimes"] or model_runtimes(config)),
            runtime_ceiling_share=float(tuning["runtime_ceiling_share"]),
            max_latency_of_slo=tuple(tuning["max_latency_of_slo"]),
            max_batch_sizes=tuple(tuning["max_batch_sizes"]),
            sub_batch_sizes=tuple(tuning["sub_batch_sizes"]),
            probe_duration_s=float(tuning["probe_duration_s"]),
        )

    def tunes(self, config: dict[str, Any]) -> bool:
        """The stage runs (and builds the tuned variant's Bento from its winner): enabled, the
        variant in the study, and the study's servers on this machine's server cores: the
        local target, or docker, whose container runs the same Bento pinned to the same cores
        (the stage itself always serves its candidates locally: the knobs are set per server
        start). Not on k3s (other machines) nor external (no Bento)."""
        return (
            self.enabled
            and config["deploy"]["target"] in TUNED_TARGETS
            and self.variant in config["variants"]
        )

    def variants_of(self, config: dict[str, Any]) -> dict[str, Any]:
        """The variant definitions the tuning reads: the tuned one and the compared ones
        (`ablation-*`), by name; another variant added to the study changes nothing here."""
        return {
            name: spec
            for name, spec in config["variants"].items()
            if name == self.variant or name.startswith(COMPARED_PREFIX)
        }


# ------------------------------------------------------------------------ deployment targets


@dataclass(frozen=True)
class LocalTarget:
    """`deploy.target: local`: `bentoml serve` on this machine, pinned to the server's cores."""

    cpus: tuple[int, ...]
    ready_timeout_s: float
    name: str = "local"
    # Environment of the server over this process's (the tuning stage sets a variant spec).
    environment: tuple[tuple[str, str], ...] = ()


# The deployment axes a variant may set itself on the K3s target (variants.<name>.k3s).
K3S_VARIANT_AXES = ("replicas", "max_replicas", "pdb_min_available")


@dataclass(frozen=True)
class K3sTarget:
    """`deploy.target: k3s`: deploy.k3s with the variant's own axes over it."""

    namespace: str
    kubectl: str
    k3s_command: str
    containerize_backend: str
    image_registry: str
    image_repository: str
    image_transfer: str
    replicas: int
    max_replicas: int
    hpa_cpu_utilization_percent: int
    pdb_min_available: int | None  # None: maxUnavailable 1
    resources: dict[str, dict[str, str]]
    volume_size_limits: dict[str, str]
    read_only_root_filesystem: bool
    access: str
    node_port: int
    node_address: str
    rollout_timeout_s: float
    command_timeout_s: float
    monitor_interval_s: float
    faults: dict[str, str]
    ready_timeout_s: float
    # The pods run in the cluster, not on this machine's server cores: a run measures (and
    # owns) only the generator's cores here.
    cpus: tuple[int, ...] = ()
    name: str = "k3s"
    # Where the image build keeps its base image and wheelhouse (servebench.deploy.images).
    results_dir: str = "results"

    @classmethod
    def of(cls, config: dict[str, Any], variant: str | None = None) -> K3sTarget:
        k3s = {**config["deploy"]["k3s"], **k3s_variant_axes(config, variant)}
        return cls(
            **{key: k3s[key] for key in cls.__dataclass_fields__ if key in k3s},
            ready_timeout_s=float(config["deploy"]["ready_timeout_s"]),
            results_dir=str(config["results_dir"]),
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as recorded in meta.json and k3s.json."""
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def k3s_variant_axes(config: dict[str, Any], variant: str | None) -> dict[str, Any]:
    """The deployment axes a variant sets itself (`variants.<name>.k3s`, null keys inherit)."""
    if variant is None or variant not in config["variants"]:
        return {}
    given = config["variants"][variant].get("k3s") or {}
    return {
        key: value for key, value in given.items() if key in K3S_VARIANT_AXES and value is not None
    }


# The pod-spec settings a container on the docker target takes from deploy.k3s (the rest is
# the cluster's business); a change of one reruns the docker runs.
DOCKER_POD_KEYS = (
    "resources",
    "read_only_root_filesystem",
    "image_registry",
    "image_repository",
    "replicas",
)


@dataclass(frozen=True)
class DockerTarget:
    """`deploy.target: docker`: the variant's image (servebench.deploy.images) in one container
    on this machine, pinned to the server's cores and run as the variant's K3s pod: `pod` holds
    the settings its manifest is rendered from (deploy.k3s with the variant's own axes), and the
    container's flags are read from that rendered manifest, so pod and container cannot drift.
    `restart`: what happens when the server's main process dies (none: the container stays
    down; supervisor: Docker's `on-failure` restart policy starts it again)."""

    cpus: tuple[int, ...]
    ready_timeout_s: float
    pod: K3sTarget
    restart: str = "none"
    name: str = "docker"

    @classmethod
    def of(cls, config: dict[str, Any], variant: str | None = None) -> DockerTarget:
        return cls(
            cpus=tuple(config["cpus"]["server"]),
            ready_timeout_s=float(config["deploy"]["ready_timeout_s"]),
            pod=K3sTarget.of(config, variant),
        )

    def with_restart(self, restart: str) -> DockerTarget:
        """The same target with a resilience variant's restart policy (none or supervisor)."""
        return dataclasses.replace(self, restart=restart)

    def as_dict(self) -> dict[str, Any]:
        """What a container's run depends on (the workflow's params: a change reruns it)."""
        return {
            "cpus": list(self.cpus),
            "ready_timeout_s": self.ready_timeout_s,
            "restart": self.restart,
            "pod": {key: getattr(self.pod, key) for key in DOCKER_POD_KEYS},
        }


@dataclass(frozen=True)
class ExternalTarget:
    """`deploy.target: external`: a server that already runs, elsewhere or here, at the
    variant's URL (deploy.external.urls); servebench builds, deploys and stops nothing."""

    url: str
    ready_path: str
    ready_timeout_s: float
    # The server's cores are not this machine's to measure: a run measures (and owns) only the
    # generator's cores.
    cpus: tuple[int, ...] = ()
    name: str = "external"

    @classmethod
    def of(cls, config: dict[str, Any], variant: str | None = None) -> ExternalTarget:
        external = config["deploy"]["external"]
        return cls(
            url=external["urls"].get(variant, "") if variant is not None else "",
            ready_path=external["ready_path"],
            ready_timeout_s=float(config["deploy"]["ready_timeout_s"]),
        )


def study_variants(config: dict[str, Any]) -> list[str]:
    """Every variant name a job may serve: those under `variants` and, on the external target,
    those with a URL (an external variant needs no definition under `variants`)."""
    deploy = config["deploy"]
    urls = deploy["external"]["urls"] if deploy["target"] == "external" else {}
    return list(dict.fromkeys([*config["variants"], *urls]))


DeployTarget = LocalTarget | K3sTarget | DockerTarget | ExternalTarget


def deploy_target(config: dict[str, Any], variant: str | None = None) -> DeployTarget:
    """The configured deployment target's settings for `variant`."""
    if config["deploy"]["target"] == "k3s":
        return K3sTarget.of(config, variant)
    if config["deploy"]["target"] == "docker":
        return DockerTarget.of(config, variant)
    if config["deploy"]["target"] == "external":
        return ExternalTarget.of(config, variant)
    return LocalTarget(
        cpus=tuple(config["cpus"]["server"]),
        ready_timeout_s=float(config["deploy"]["ready_timeout_s"]),
    )


# ------------------------------------------------------------------------------- resilience


@dataclass(frozen=True)
class RecoverySettings:
    """`resilience.recovery`: the rule of the time to recover."""

    window_s: float
    quiet_s: float
    band_tolerance: float


@dataclass(frozen=True)
class FaultSettings:
    """One fault of `resilience.faults`: its kind, injection time and parameters."""

    name: str
    kind: str
    at_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResilienceSettings:
    """One resilience run's settings: the load, the fault, the variant's restart policy."""

    variant: str  # the resilience variant (resilience.variants)
    bento_variant: str  # the Bento variant it serves
    restart: str
    fault: FaultSettings
    scenario: ScenarioSettings
    rate_rps: float | None  # absolute, over the scenario's own rate
    duration_s: float
    warmup_s: float
    probe_interval_s: float
    recovery: RecoverySettings

    @classmethod
    def of(cls, config: dict[str, Any], variant: str, fault: str) -> ResilienceSettings:
        resilience = config["resilience"]
        if fault == PROBES_ONLY:  # a target without fault kinds: the load and the probes
            fault_config = {"kind": "none", "at_s": math.nan}
        else:
            fault_config = dict(resilience["faults"][fault])
        kind = fault_config.pop("kind")
        at_s = float(fault_config.pop("at_s"))
        chosen = resilience["variants"][variant]
        return cls(
            variant=variant,
            bento_variant=chosen["variant"],
            restart=chosen["restart"],
            fault=FaultSettings(fault, kind, at_s, fault_config),
            scenario=ScenarioSettings.of(config, resilience["scenario"]),
            rate_rps=resilience["rate_rps"],
            duration_s=float(resilience["duration_s"]),
            warmup_s=float(resilience["warmup_s"]),
            probe_interval_s=float(resilience["probe_interval_s"]),
            recovery=RecoverySettings(**resilience["recovery"]),
        )

    @property
    def needs_reference(self) -> bool:
        return self.rate_rps is None and self.scenario.needs_reference


# --------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class AnalysisSettings:
    """`analysis` and the master seed: the statistics of the tables and the report."""

    ci_level: float = 0.95
    alpha: float = 0.05
    seed: int = 0

    @classmethod
    def of(cls, config: dict[str, Any]) -> AnalysisSettings:
        analysis = config["analysis"]
        return cls(
            ci_level=float(analysis["ci_level"]),
            alpha=float(analysis["alpha"]),
            seed=int(config["seed"]),
        )
