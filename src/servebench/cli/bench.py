"""`servebench bench NAME [OPTIONS]`: the benchmarks of servebench.bench."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "loadgen-capacity": "how fast the load generator sends on schedule, on one core",
    "single-core-ceiling": "how many texts/s one server core classifies with no server",
    "model-quantization": "INT8 quantization configs: speed and agreement with fp32",
    "service-internals": "sub-batching, gc pauses and INT8 batch composition in-process",
    "container-overhead": "each variant calibrated locally, then in its container (docker)",
    "soak": "10 min at 0.7 of saturation with 5% bad requests: no failure, leak or restart",
    "largest-request": "the largest accepted request per variant: time, memory; oversized refused",
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"servebench.bench.{args.benchmark.replace('-', '_')}")
    return int(module.main(args.options) or 0)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (numbers to results/benchmarks/; holds the machine)",
        description="Run one benchmark; `servebench bench NAME --help` lists its options. "
        + "; ".join(f"{name}: {text}" for name, text in BENCHMARKS.items()),
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options")
    parser.set_defaults(func=_run)
