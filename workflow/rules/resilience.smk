# Resilience experiments: one job per (target, variant, fault, repetition), one at a time.
# A fault is injected at a scheduled time into a running open-loop load test.
# Logic: src/servebench/faults.py. Output: results/resilience/<target>/<variant>/<fault>/rep<r>/
# (the load test's files, probes.csv, faults.json, meta.json), then results/tables/resilience.csv
# and one timeline figure per fault (docs/resilience.md).
from servebench.faults import (
    check_resilience_config,
    fault_seed,
    resilience_figure_names,
    resilience_matrix,
)
from servebench.experiment import scenario_needs_capacity
from servebench.stats import source_hash

_resilience_problems = check_resilience_config(config)
if _resilience_problems:
    raise WorkflowError(
        "invalid configuration (see config/schema.yaml):\n  - "
        + "\n  - ".join(_resilience_problems)
    )
RESILIENCE = config["resilience"]
RESILIENCE_MATRIX = resilience_matrix(config)
RESILIENCE_RUN = results(
    "resilience", "{target}", "{rvariant}", "{fault}", "rep{rep}", "{name}"
)
RESILIENCE_TABLE = results("tables", "resilience.csv")
RESILIENCE_FIGURES = {
    f"{name.replace('-', '_')}_{ext}": results("figures", f"{name}.{ext}")
    for name in resilience_figure_names(config)
    for ext in ("png", "pdf")
}
# What `all` and the report need: every run's meta.json, the table and the figures.
RESILIENCE_TARGETS = (
    [str(spec.path(RESULTS) / "meta.json") for spec in RESILIENCE_MATRIX]
    + [RESILIENCE_TABLE]
    + list(RESILIENCE_FIGURES.values())
    if RESILIENCE_MATRIX
    else []
)
# The table's inputs; with analysis.existing_runs_only only the runs on disk (a re-render
# never starts a load test).
RESILIENCE_FAULTS_JSON = [
    str(spec.path(RESULTS) / "faults.json")
    for spec in RESILIENCE_MATRIX
    if not config["analysis"].get("existing_runs_only", False)
    or (spec.path(RESULTS) / "meta.json").is_file()
]
# What the report shows.
RESILIENCE_REPORT_INPUTS = (
    [RESILIENCE_TABLE, *RESILIENCE_FIGURES.values()] if RESILIENCE_MATRIX else []
)
# The load follows resilience.scenario: relative rates need the reference capacity.
RESILIENCE_NEEDS_CAPACITY = not RESILIENCE.get("rate_rps") and scenario_needs_capacity(
    config["scenarios"][RESILIENCE["scenario"]]
)


rule resilience_run:
    input:
        bento=lambda wildcards: results(
            "bentos", f"{RESILIENCE['variants'][wildcards.rvariant]['variant']}.json"
        ),
        payloads=results("data", "payloads.csv"),
        capacity=lambda wildcards: (
            results(
                "calibration",
                wildcards.target,
                config["experiment"]["reference_variant"],
                "capacity.json",
            )
            if RESILIENCE_NEEDS_CAPACITY
            else []
        ),
    output:
        faults=RESILIENCE_RUN.replace("{name}", "faults.json"),
        meta=RESILIENCE_RUN.replace("{name}", "meta.json"),
    log:
        results(
            "logs", "resilience", "{target}", "{rvariant}", "{fault}", "rep{rep}.log"
        ),
    wildcard_constraints:
        rvariant="|".join(re.escape(name) for name in RESILIENCE["variants"]),
        fault="|".join(re.escape(name) for name in RESILIENCE["faults"]),
    conda:
        CONDA_ENV
    resources:
        loadtest=1,
    params:
        # Rerun when the fault, the variant's restart policy, the load or the pinning change.
        fault=lambda wildcards: RESILIENCE["faults"][wildcards.fault],
        variant=lambda wildcards: RESILIENCE["variants"][wildcards.rvariant],
        k3s=k3s_deployment,
        load={
            key: RESILIENCE[key]
            for key in (
                "scenario",
                "rate_rps",
                "duration_s",
                "warmup_s",
                "probe_interval_s",
            )
        },
        scenario=config["scenarios"][RESILIENCE["scenario"]],
        recovery=RESILIENCE["recovery"],
        seed=lambda wildcards: fault_seed(config, wildcards.fault, int(wildcards.rep)),
        cpus=config["cpus"],
        loadgen=config["loadgen"],
    script:
        "../scripts/resilience.py"


rule resilience_analysis:
    input:
        faults=RESILIENCE_FAULTS_JSON,
    output:
        **{
            key: (
                report(
                    path,
                    caption="../../report/captions/resilience_timeline.rst",
                    category="Resilience",
                )
                if key.endswith("_png")
                else path
            )
            for key, path in RESILIENCE_FIGURES.items()
        },
        table=report(
            RESILIENCE_TABLE,
            caption="../../report/captions/resilience.rst",
            category="Resilience",
        ),
    log:
        results("logs", "analysis", "resilience.log"),
    conda:
        CONDA_ENV
    params:
        faults=RESILIENCE["faults"],
        code=source_hash("faults", "figures"),
    script:
        "../scripts/resilience_analysis.py"


# Every resilience run, the table and the figures: `snakemake --cores 4 resilience`.
rule resilience:
    default_target: False
    input:
        RESILIENCE_TARGETS,
