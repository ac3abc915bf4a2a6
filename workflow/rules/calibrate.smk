# Capacity calibration: an open-loop stepped ramp of offered rate per (target, variant).
# Logic: src/servebench/jobs/calibrate.py. Output: results/calibration/<target>/<variant>/.


rule calibrate:
    input:
        bento=lambda wildcards: bento_input(wildcards.variant),
        payloads=str(LAYOUT.payloads_csv),
        # docker target: the variant's image and the pod spec
        container=container_inputs,
        # The runtime's in-process ceiling: its best strategy is measured again beside the
        # search (servebench.jobs.calibrate.CeilingBeside).
        ceiling=lambda wildcards: (
            [] if EXTERNAL else bento_runtime_inputs(layout.INPROCESS_BENCH)(wildcards)
        ),
    output:
        steps=calibration_path("{target}", "{variant}", layout.STEPS),
        capacity=calibration_path("{target}", "{variant}", layout.CAPACITY),
    log:
        results("logs", "calibration", "{target}", "{variant}.log"),
    priority: 100
    # A measurement owns the machine: all cores, so that no other job runs beside it.
    threads: workflow.cores
    resources:
        loadtest=1,
    params:
        # Rerun when the ramp, the pinning or the generator's settings change.
        calibration=config["calibration"],
        cpus=config["cpus"],
        loadgen=config["loadgen"],
        bench=config["model"]["inprocess_bench"],
        k3s=k3s_deployment,
    script:
        "../scripts/calibrate.py"
