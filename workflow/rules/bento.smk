# Bentos: one per service variant, built offline into deploy.bentoml_home, from the variant's
# runtime (after its fidelity gate passed). Logic: src/servebench/bento.py; the service itself
# is services/sentiment/. Output: results/bentos/<variant>.json (tag, settings, sizes).
# Helpers (BENTO_SOURCES, bento_runtime, bento_targets) live in common.smk.


rule bento:
    input:
        runtime=lambda wildcards: model_dir(
            bento_runtime(wildcards), layout.MODEL_PROVENANCE
        ),
        # A runtime that changes the model's answers never gets a Bento.
        fidelity=lambda wildcards: model_dir(bento_runtime(wildcards), layout.FIDELITY),
        requirements=lambda wildcards: f"envs/bento-{bento_runtime(wildcards)}.txt",
        sources=BENTO_SOURCES,
    output:
        str(LAYOUT.bento_record("{variant}")),
    log:
        results("logs", "bento", "{variant}.log"),
    benchmark:
        results("benchmarks", "bento", "{variant}.tsv")
    conda:
        CONDA_ENV
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
