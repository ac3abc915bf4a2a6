# Bentos: one per service variant, built offline into deploy.bentoml_home, from the variant's
# runtime (after its fidelity gate passed), the tuned variant's from the tuning stage's winner
# (tuned.json). Logic: src/servebench/bento.py; the service itself
# is services/sentiment/. Output: results/bentos/<variant>.json (tag, settings, sizes).
# Helpers (BENTO_SOURCES, bento_runtime, bento_targets) live in common.smk.


rule bento:
    input:
        runtimes=bento_runtime_inputs(layout.MODEL_PROVENANCE),
        # A runtime that changes the model's answers never gets a Bento.
        fidelity=bento_runtime_inputs(layout.FIDELITY),
        # The tuned variant's knobs come from the tuning stage (unless tuning.pin).
        tuned=lambda wildcards: (
            [str(LAYOUT.tuning_dir / layout.TUNED)]
            if wildcards.variant == TUNED_VARIANT
            else []
        ),
        requirements=bento_requirements,
        sources=BENTO_SOURCES,
    output:
        str(LAYOUT.bento_record("{variant}")),
    log:
        results("logs", "bento", "{variant}.log"),
    benchmark:
        results("benchmarks", "bento", "{variant}.tsv")
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    params:
        # Rebuild when the variant's settings, the input limits or the store change.
        variant=lambda wildcards: config["variants"][wildcards.variant],
        service=config["service"],
        bentoml_home=config["deploy"]["bentoml_home"],
    script:
        "../scripts/build_bento.py"


# Every Bento of the experiment: `snakemake --cores 2 bentos`.
rule bentos:
    input:
        bento_targets(),
