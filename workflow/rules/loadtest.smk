# The run matrix: one job per (target, variant, scenario, repetition), one at a time.
# Logic: src/servebench/jobs/scenario.py. Output: results/runs/<target>/<variant>/... with
# every file the analysis reads declared (servebench.layout.RUN_FILES): deleting one reruns.


rule loadtest:
    input:
        bento=lambda wildcards: bento_input(wildcards.variant),
        payloads=str(LAYOUT.payloads_csv),
        capacity=reference_capacity,
        # docker target: the variant's image and the pod spec
        container=container_inputs,
    output:
        **{name.split(".")[0]: run_path(name) for name in layout.RUN_FILES},
    log:
        results("logs", "runs", "{target}", "{variant}", "{scenario}", "rep{rep}.log"),
    # Runs start in matrix order (scenario, repetition, variants A B B A ...).
    priority: run_priority
    # A measurement owns the machine: all cores, so that no other job runs beside it.
    threads: workflow.cores
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
