# The tuning stage: the tuned variant's service knobs for the server's cores, before the
# scenario runs. Logic: src/servebench/jobs/tune.py (docs/tuning.md). Output: results/tuning/
# {tuning.csv, tuned.json}; the tuned variant's Bento is built from tuned.json (bento.smk).


rule tune:
    input:
        payloads=str(LAYOUT.payloads_csv),
        runtimes=[
            model_dir(runtime, layout.MODEL_PROVENANCE) for runtime in TUNING_RUNTIMES
        ],
        # Only runtimes that passed the fidelity gate are served; their in-process ceilings
        # prune the slow ones.
        fidelity=[model_dir(runtime, layout.FIDELITY) for runtime in TUNING_RUNTIMES],
        bench=[
            model_dir(runtime, layout.INPROCESS_BENCH) for runtime in TUNING_RUNTIMES
        ],
        requirements=[f"envs/bento-{runtime}.txt" for runtime in TUNING_RUNTIMES],
        sources=BENTO_SOURCES,
    output:
        tuning=str(LAYOUT.tuning_dir / layout.TUNING),
        tuned=str(LAYOUT.tuning_dir / layout.TUNED),
    log:
        results("logs", "tuning", "tune.log"),
    priority: 100
    # A measurement owns the machine: all cores, so that no other job runs beside it.
    threads: workflow.cores
    resources:
        loadtest=1,
    params:
        # Rerun when the search, the SLO, the pinning, the generator or the variants change.
        tuning=config["tuning"],
        calibration=config["calibration"],
        measurement=config["measurement"],
        cpus=config["cpus"],
        loadgen=config["loadgen"],
        variants=TUNING.variants_of(config),
        service=config["service"],
    script:
        "../scripts/tune.py"


# `snakemake --cores 2 tune`: the tuning stage alone.
rule tuning:
    input:
        TUNING_TARGETS,
