# Capacity calibration: an open-loop stepped ramp of offered rate per (target, variant).
# Logic: src/servebench/runs.py (calibrate). Output: results/calibration/<target>/<variant>/.


rule calibrate:
    input:
        bento=results("bentos", "{variant}.json"),
        payloads=results("data", "payloads.csv"),
    output:
        steps=results("calibration", "{target}", "{variant}", "steps.csv"),
        capacity=results("calibration", "{target}", "{variant}", "capacity.json"),
    log:
        results("logs", "calibration", "{target}", "{variant}.log"),
    priority: 100
    conda:
        CONDA_ENV
    resources:
        loadtest=1,
    params:
        # Rerun when the ramp, the pinning or the generator's settings change.
        calibration=config["calibration"],
        cpus=config["cpus"],
        loadgen=config["loadgen"],
        k3s=k3s_deployment,
    script:
        "../scripts/calibrate.py"
