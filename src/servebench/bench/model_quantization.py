"""Speed and fidelity of the INT8 quantization configs: ISA (avx512_vnni, avx2, arm64) x
per-channel weights, on a prepared model (the evidence behind `model.quantization`).

Run by hand after the model stage (it holds a core for minutes; take the heavy lock):

    .venv/bin/servebench bench model-quantization \
        --model-dir results/model/synthetic-roberta-base

Each config quantizes <model-dir>/onnx into results/benchmarks/quantization/<config>/, then
measures batch latency in-process (as inprocess_bench.csv does, pinned to `cpus.server`, one
thread) and label agreement with <model-dir>/pytorch/payload_probabilities.csv on the payload
set (results/data/payloads.csv). Writes results/benchmarks/model_quantization.csv.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from servebench.bench import add_model_arguments, bench_parser
from servebench.config import load_config
from servebench.model import bench as model_bench
from servebench.model import build
from servebench.model import fidelity as model_fidelity
from servebench.model.runtime import load_runtime, read_provenance
from servebench.payloads import read_payloads


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser)
    parser.add_argument("--isas", nargs="+", default=["avx512_vnni", "avx2"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--min-duration-s", type=float, default=3.0)
    parser.add_argument(
        "--out", type=Path, default=Path("results/benchmarks/model_quantization.csv")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for needed in (args.model_dir / "onnx", args.model_dir / "pytorch"):
        read_provenance(needed)
    reference_csv = args.model_dir / "pytorch" / "payload_probabilities.csv"
    if not reference_csv.is_file() or not args.payloads.is_file():
        raise SystemExit(f"run the model stage first: {reference_csv} or {args.payloads} missing")
    cpus = load_config()["cpus"]["server"]  # resolved: cpus.server may be auto
    payloads = read_payloads(args.payloads)
    texts = payloads["text"].tolist()
    labels = read_provenance(args.model_dir / "pytorch")["labels"]
    _, reference = model_fidelity._read_probabilities(reference_csv, labels)
    rows = []
    for isa in args.isas:
        for per_channel in (False, True):
            name = f"{isa}-{'per-channel' if per_channel else 'per-tensor'}"
            out_dir = args.out.parent / "quantization" / name
            build.quantize_onnx(
                args.model_dir / "onnx",
                out_dir,
                isa=isa,
                per_channel=per_channel,
                measure_load=False,
            )
            probabilities = model_fidelity.predict_payloads(load_runtime(out_dir, threads=1), texts)
            fidelity = model_fidelity.fidelity_report(
                reference, probabilities, labels, weights="synthetic"
            )
            bench = model_bench.inprocess_bench(
                out_dir,
                texts,
                batch_sizes=args.batch_sizes,
                cpus=cpus,
                thread_counts=[1],
                warmup_batches=3,
                min_batches=10,
                min_duration_s=args.min_duration_s,
            )
            for row in bench:
                rows.append(
                    {
                        "config": name,
                        "isa": isa,
                        "per_channel": per_channel,
                        "label_agreement": fidelity["label_agreement"],
                        "n_disagreements": fidelity["n_disagreements"],
                        "mean_abs_prob_diff": fidelity["mean_abs_prob_diff"],
                        **{
                            k: row[k]
                            for k in (
                                "batch_size",
                                "threads",
                                "median_ms",
                                "p99_ms",
                                "sequences_per_s",
                            )
                        },
                        "model": row["model"],
                    }
                )
                logging.info("%s", rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
