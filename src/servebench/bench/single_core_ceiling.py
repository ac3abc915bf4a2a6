"""How many texts/s can one core classify at all? The in-process ceiling behind issue 4's
"optimized >= 8x baseline" target, for the runtime the optimized variant uses and for the
alternatives one would try next.

Run by hand after the model stage (it holds core 0 for about 8 minutes; take the heavy lock):

    .venv/bin/servebench bench single-core-ceiling

Every candidate runs in this process on one thread, pinned to `cpus.server` (core 0), over
the same payload texts (results/data/payloads.csv), tokenization included, in two batchings:

- `sorted-global-<k>`: all texts sorted by length, then cut into batches of k (1, 4, 32). No server can
  batch better than this (it would need every request at once), so it bounds the service.
- `window-28-sub-4`: windows of 28 consecutive payloads (the mean batch the optimized server
  formed at saturation), each sorted by length and cut into sub-batches of 4, as the service
  does with `sub_batch_size: 4`.

Candidates: `pytorch` fp32 (the baseline's runtime), `pytorch-bf16-autocast` (AMX bf16 via
oneDNN), `onnx-int8` (the optimized variant's model), and `onnx-int8-fused`
(onnxruntime.transformers fusions, then dynamic quantization with QAttention). Repetitions
are interleaved (ABAB...) and the median is reported. A last row measures one int8 GEMM
(1024x768x3072, MatMulInteger) in GOPS, to show which instruction set ONNX Runtime's kernels
reach on this CPU.

Writes results/benchmarks/single_core_ceiling.csv.
"""

from __future__ import annotations

import csv
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from servebench.bench import add_model_arguments, bench_parser
from servebench.config import load_config
from servebench.model.runtime import load_runtime, read_provenance

logger = logging.getLogger("single_core_ceiling")

WINDOW_TEXTS = 28
SUB_BATCH_TEXTS = 4


def batchings(texts: Sequence[str]) -> dict[str, list[list[str]]]:
    """Batch plans over the same texts: global sort in batches of 1/4/32, and service-like."""
    by_length = sorted(texts, key=len)
    plans = {
        f"sorted-global-{k}": [by_length[i : i + k] for i in range(0, len(by_length), k)]
        for k in (1, 4, 32)
    }
    window_plan = []
    for start in range(0, len(texts), WINDOW_TEXTS):
        window = sorted(texts[start : start + WINDOW_TEXTS], key=len)
        window_plan += [
            window[i : i + SUB_BATCH_TEXTS] for i in range(0, len(window), SUB_BATCH_TEXTS)
        ]
    plans[f"window-{WINDOW_TEXTS}-sub-{SUB_BATCH_TEXTS}"] = window_plan
    return plans


def fused_int8_model(onnx_dir: Path, out_dir: Path) -> Path:
    """onnxruntime.transformers fusions (Attention, SkipLayerNorm, BiasGelu) on the plain
    export, then dynamic INT8 quantization (QAttention); cached in out_dir."""
    fused_int8 = out_dir / "model_fused_int8.onnx"
    if fused_int8.is_file():
        return fused_int8
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    provenance = read_provenance(onnx_dir)
    config = pd.read_json(onnx_dir / "files" / "config.json", typ="series")
    out_dir.mkdir(parents=True, exist_ok=True)
    fused = out_dir / "model_fused.onnx"
    optimized = optimizer.optimize_model(
        str(onnx_dir / "files" / provenance["model_file"]),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=0,
    )
    logger.info("fused operators: %s", optimized.get_fused_operator_statistics())
    optimized.save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(fused_int8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # the fused ops (com.microsoft domain) defeat shape inference; their outputs are float
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    fused.unlink()
    return fused_int8


def torch_runner(runtime_dir: Path, bf16: bool) -> Callable[[list[str]], None]:
    import torch

    classifier = load_runtime(runtime_dir, threads=1)

    def classify(batch: list[str]) -> None:
        input_ids, attention_mask = classifier.encode(batch)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            classifier.model(
                input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy(attention_mask),
            )

    return classify


def int8_gemm_gops(m: int = 1024, k: int = 768, n: int = 3072, repeats: int = 20) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 127, (k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options)
    a = rng.integers(0, 255, (m, k), dtype=np.uint8)
    for _ in range(3):
        session.run(None, {"a": a})
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {"a": a})
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser)
    parser.add_argument("--n-texts", type=int, default=280)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("results/benchmarks/single_core_ceiling.csv")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for runtime in ("pytorch", "onnx", "onnx-int8"):
        read_provenance(args.model_dir / runtime)
    if not args.payloads.is_file():
        raise SystemExit(f"{args.payloads} missing: run the model stage first")
    server_cpus = load_config()["cpus"]["server"]  # resolved: cpus.server may be auto
    os.sched_setaffinity(0, set(server_cpus))
    texts = pd.read_csv(args.payloads)["text"].tolist()[: args.n_texts]
    plans = batchings(texts)

    fused_path = fused_int8_model(
        args.model_dir / "onnx", Path("results/benchmarks/single_core_ceiling")
    )
    int8_classifier = load_runtime(args.model_dir / "onnx-int8", threads=1)
    fused_classifier = load_runtime(args.model_dir / "onnx-int8", threads=1)
    fused_classifier.session = _session(fused_path)
    fused_classifier.input_names = [node.name for node in fused_classifier.session.get_inputs()]
    candidates: dict[str, Callable[[list[str]], None]] = {
        "pytorch": torch_runner(args.model_dir / "pytorch", bf16=False),
        "pytorch-bf16-autocast": torch_runner(args.model_dir / "pytorch", bf16=True),
        "onnx-int8": int8_classifier.predict_proba,
        "onnx-int8-fused": fused_classifier.predict_proba,
    }
    for classify in candidates.values():  # warm-up
        for batch in plans["sorted-global-4"][:3]:
            classify(batch)

    texts_per_s: dict[tuple[str, str], list[float]] = {}
    for repetition in range(args.repetitions):
        for plan_name, plan in plans.items():
            for name, classify in candidates.items():
                started = time.perf_counter()
                for batch in plan:
                    classify(batch)
                rate = len(texts) / (time.perf_counter() - started)
                texts_per_s.setdefault((name, plan_name), []).append(rate)
                logger.info("rep %d %s %s: %.1f texts/s", repetition, name, plan_name, rate)

    rows = []
    for (name, plan_name), rates in texts_per_s.items():
        median = statistics.median(rates)
        rows.append(
            {
                "candidate": name,
                "batching": plan_name,
                "texts_per_s_median": round(median, 2),
                "texts_per_s_all": " ".join(f"{rate:.1f}" for rate in rates),
                "n_texts": len(texts),
                "threads": 1,
                "cpus": " ".join(map(str, server_cpus)),
            }
        )
    gops = int8_gemm_gops()
    rows.append(
        {
            "candidate": "int8-gemm-1024x768x3072",
            "batching": "MatMulInteger",
            "texts_per_s_median": "",
            "texts_per_s_all": f"{gops:.0f} GOPS",
            "n_texts": "",
            "threads": 1,
            "cpus": " ".join(map(str, server_cpus)),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"wrote {args.out}")
    return 0


def _session(model_path: Path):  # noqa: ANN202 - onnxruntime type
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    sys.exit(main())
