# The run matrix: one job per (target, variant, scenario, repetition), one at a time.
# Logic: src/servebench/runs.py (run_scenario). Output: results/runs/<target>/<variant>/...


rule loadtest:
    input:
        bento=results("bentos", "{variant}.json"),
        payloads=results("data", "payloads.csv"),
        capacity=reference_capacity,
    output:
        summary=run_path("summary.json"),
        meta=run_path("meta.json"),
    log:
        results("logs", "runs", "{target}", "{variant}", "{scenario}", "rep{rep}.log"),
    # Runs start in matrix order (scenario, repetition, variants A B B A ...).
    priority: run_priority
    conda:
        CONDA_ENV
    resources:
        loadtest=1,
    params:
        scenario=lambda wildcards: config["scenarios"][wildcards.scenario],
        seed=lambda wildcards: run_seed(config, wildcards.scenario, int(wildcards.rep)),
        cpus=config["cpus"],
        loadgen=config["loadgen"],
        k3s=k3s_deployment,
    script:
        "../scripts/loadtest.py"


# Every run of the matrix (and the calibration it needs): `snakemake --cores 4 runs`.
rule runs:
    default_target: False
    input:
        run_targets(),
