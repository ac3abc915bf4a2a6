# The run matrix: one job per (target, variant, scenario, repetition), one at a time.
# Logic: src/servebench/runs.py (run_scenario). Output: results/runs/<target>/<variant>/...


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


rule loadtest:
    input:
        bento=results("bentos", "{variant}.json"),
        payloads=results("data", "payloads.csv"),
        capacity=reference_capacity,
    output:
        summary=run_path("summary.json"),
        meta=run_path("meta.json"),
    params:
        scenario=lambda wildcards: config["scenarios"][wildcards.scenario],
        seed=lambda wildcards: run_seed(config, wildcards.scenario, int(wildcards.rep)),
        cpus=config["cpus"],
        loadgen=config["loadgen"],
    resources:
        loadtest=1,
    # Runs start in matrix order (scenario, repetition, variants A B B A ...).
    priority: run_priority
    log:
        results("logs", "runs", "{target}", "{variant}", "{scenario}", "rep{rep}.log"),
    conda:
        CONDA_ENV
    script:
        "../scripts/loadtest.py"


rule runs:
    """Every run of the matrix (and the calibration it needs): `snakemake --cores 4 runs`."""
    input:
        run_targets(),
    default_target: False
