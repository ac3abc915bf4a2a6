# Model preparation: resolve the model, build its runtimes, check fidelity against pytorch
# fp32, and measure each runtime's in-process ceiling. Logic: src/servebench/model/.
# Layout: results/model/<model>/<runtime>/{provenance.json, files/, payload_probabilities.csv,
# fidelity.json, inprocess_bench.csv}; results/data/payloads.csv and its token lengths.


# Every output of the model stage: `snakemake --cores 2 model`.
rule model:
    input:
        model_targets(),


rule model_pytorch:
    input:
        # The synthetic fallback trains its tokenizer on the bundled corpus.
        corpus=["data/texts.csv"] if MODEL.kind == "synthetic" else [],
    output:
        files=directory(model_dir("pytorch", layout.MODEL_FILES)),
        provenance=model_dir("pytorch", layout.MODEL_PROVENANCE),
    log:
        results("logs", "model", MODEL.name, "pytorch.log"),
    benchmark:
        results("benchmarks", "model", MODEL.name, "pytorch.tsv")
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    params:
        # Only what shapes the model: changing e.g. the benchmark settings rebuilds nothing.
        model={
            key: config["model"][key]
            for key in ("id", "local_dir", "fallback", "synthetic")
        },
        name=MODEL.name,
    script:
        "../scripts/model_runtime.py"


rule model_runtime:
    input:
        source=lambda wildcards: model_dir(
            MODEL_RUNTIME_SOURCE[wildcards.runtime], layout.MODEL_PROVENANCE
        ),
    output:
        files=directory(model_dir("{runtime}", layout.MODEL_FILES)),
        provenance=model_dir("{runtime}", layout.MODEL_PROVENANCE),
    log:
        results("logs", "model", MODEL.name, "{runtime}.log"),
    benchmark:
        results("benchmarks", "model", MODEL.name, "{runtime}.tsv")
    wildcard_constraints:
        runtime="onnx|onnx-int8|pytorch-cuda-fp16|onnx-cuda-fp16",
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    params:
        model=lambda wildcards: (
            {"quantization": config["model"]["quantization"]}
            if wildcards.runtime == "onnx-int8"
            else {}
        ),
        name=MODEL.name,
    script:
        "../scripts/model_runtime.py"


rule payloads:
    input:
        payload_source_input,
    output:
        str(LAYOUT.payloads_csv),
    log:
        results("logs", "data", "payloads.log"),
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    params:
        data=config["data"],
    script:
        "../scripts/payloads.py"


rule payload_token_lengths:
    input:
        payloads=str(LAYOUT.payloads_csv),
        runtime=model_dir("pytorch", layout.MODEL_PROVENANCE),
    output:
        lengths=str(LAYOUT.token_lengths_csv),
        summary=str(LAYOUT.token_summary_json),
    log:
        results("logs", "data", "payload_token_lengths.log"),
    script:
        "../scripts/payload_token_lengths.py"


rule model_predictions:
    input:
        payloads=str(LAYOUT.payloads_csv),
        runtime=model_dir("{runtime}", layout.MODEL_PROVENANCE),
    output:
        model_dir("{runtime}", layout.PROBABILITIES),
    log:
        results("logs", "model", MODEL.name, "{runtime}.predictions.log"),
    benchmark:
        results("benchmarks", "model", MODEL.name, "{runtime}.predictions.tsv")
    wildcard_constraints:
        runtime=MODEL_RUNTIME_PATTERN,
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    threads: 2
    script:
        "../scripts/model_predictions.py"


rule model_fidelity:
    input:
        payloads=str(LAYOUT.payloads_csv),
        runtime=model_dir("{runtime}", layout.MODEL_PROVENANCE),
        reference_runtime=model_dir("pytorch", layout.MODEL_PROVENANCE),
        candidate=model_dir("{runtime}", layout.PROBABILITIES),
        reference=model_dir("pytorch", layout.PROBABILITIES),
    output:
        model_dir("{runtime}", layout.FIDELITY),
    log:
        results("logs", "model", MODEL.name, "{runtime}.fidelity.log"),
    wildcard_constraints:
        runtime=MODEL_RUNTIME_PATTERN,
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    params:
        fidelity=config["model"]["fidelity"],
    script:
        "../scripts/model_fidelity.py"


rule inprocess_bench:
    input:
        payloads=str(LAYOUT.payloads_csv),
        runtime=model_dir("{runtime}", layout.MODEL_PROVENANCE),
        # Only a runtime that passed the fidelity gate is worth measuring.
        fidelity=model_dir("{runtime}", layout.FIDELITY),
    output:
        model_dir("{runtime}", layout.INPROCESS_BENCH),
    log:
        results("logs", "model", MODEL.name, "{runtime}.inprocess_bench.log"),
    wildcard_constraints:
        runtime=MODEL_RUNTIME_PATTERN,
    # Upstream of the tuning and the Bentos: done before any load test starts, so
    # that the runs go in their ABBA order (loadtest's priorities are below 100).
    priority: 100
    # All cores: nothing else runs while a benchmark measures.
    threads: workflow.cores
    params:
        bench=config["model"]["inprocess_bench"],
        cpus=config["cpus"]["server"],
    script:
        "../scripts/inprocess_bench.py"
