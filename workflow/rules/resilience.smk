# Resilience experiments: one job per (target, variant, fault, repetition), one at a time.
# A fault is injected at a scheduled time into a running open-loop load test.
# Logic: src/servebench/jobs/resilience.py (the faults: src/servebench/faults/). Output:
# results/resilience/<target>/<variant>/<fault>/rep<r>/ (servebench.layout.RESILIENCE_FILES
# and the load test's other files), then results/tables/resilience.csv and one timeline figure
# per fault (docs/resilience.md). The configuration's resilience rules are checked with the
# others at start (common.smk).
from servebench.fault_kinds import PROBES_ONLY, resilience_faults
from servebench.layout import resilience_figure_names
from servebench.matrix import fault_seed, resilience_fault_names, resilience_matrix
from servebench.provenance import source_hash

RESILIENCE = config["resilience"]
RESILIENCE_MATRIX = resilience_matrix(config)
RESILIENCE_TABLE = str(LAYOUT.table(layout.RESILIENCE_TABLE))
RESILIENCE_FIGURES = {
    f"{name.replace('-', '_')}_{ext}": str(LAYOUT.figure(name, ext))
    for name in resilience_figure_names(resilience_fault_names(config))
    for ext in layout.FIGURE_FORMATS
}
# What `all` and the report need: every run's files (a deleted one plans its run again), the
# table and the figures.
RESILIENCE_TARGETS = (
    [
        str(spec.path(RESULTS) / name)
        for spec in RESILIENCE_MATRIX
        for name in layout.RESILIENCE_FILES
    ]
    + [RESILIENCE_TABLE]
    + list(RESILIENCE_FIGURES.values())
    if RESILIENCE_MATRIX
    else []
)
# The table's inputs; with analysis.existing_runs_only only the finished runs on disk (a
# re-render never starts a load test).
RESILIENCE_INPUTS = [
    str(spec.path(RESULTS) / name)
    for spec in RESILIENCE_MATRIX
    if not config["analysis"]["existing_runs_only"]
    or (spec.path(RESULTS) / layout.META).is_file()
    for name in layout.RESILIENCE_FILES
]
# What the report shows.
RESILIENCE_REPORT_INPUTS = (
    [RESILIENCE_TABLE, *RESILIENCE_FIGURES.values()] if RESILIENCE_MATRIX else []
)


rule resilience_run:
    input:
        bento=lambda wildcards: bento_input(
            RESILIENCE["variants"][wildcards.rvariant]["variant"]
        ),
        payloads=str(LAYOUT.payloads_csv),
        capacity=resilience_capacity,
        # docker target: the variant's image and the pod spec
        container=container_inputs,
    output:
        **{
            name.split(".")[0]: resilience_path(name)
            for name in layout.RESILIENCE_FILES
        },
    log:
        results(
            "logs", "resilience", "{target}", "{rvariant}", "{fault}", "rep{rep}.log"
        ),
    wildcard_constraints:
        rvariant="|".join(re.escape(name) for name in RESILIENCE["variants"]),
        fault="|".join(re.escape(name) for name in resilience_faults(config)),
    # A measurement owns the machine: all cores, so that no other job runs beside it.
    threads: workflow.cores
    resources:
        loadtest=1,
    params:
        # Rerun when the fault, the variant's restart policy, the load or the pinning change.
        fault=lambda wildcards: (
            None
            if wildcards.fault == PROBES_ONLY
            else RESILIENCE["faults"][wildcards.fault]
        ),
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
        runs=RESILIENCE_INPUTS,
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
    params:
        faults=RESILIENCE["faults"],
        code=source_hash("analysis", "layout", "records"),
    script:
        "../scripts/resilience_analysis.py"


# Every resilience run, the table and the figures: `snakemake --cores 4 resilience`.
rule resilience:
    default_target: False
    input:
        RESILIENCE_TARGETS,
