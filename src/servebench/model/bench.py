"""The in-process ceiling: latency and throughput per runtime, batch size, thread count and
batch order, pinned to the server's cores (what the served system is compared with).

Two orders (column `order`):
- `payload`: consecutive payloads as the load tests send them, in batches of each batch size;
- `sorted`: a sample of the payloads that keeps their length distribution (every k-th of them
  sorted by length), cut into batches of neighbours by length, whole passes only. No server
  batches better than this (it would need every request at once): it is the best strategy of
  `servebench bench single-core-ceiling` measured in every study, and the ceiling that the
  serving efficiency divides by.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.model.runtime import (
    load_runtime,
    read_provenance,
)
from servebench.payloads import read_payloads
from servebench.records import Ceiling

logger = logging.getLogger("servebench.model")


def bench_thread_counts(n_cores: int) -> list[int]:
    """1, 2, 4, ... up to the server's cores, and the core count itself."""
    counts = {1, n_cores}
    count = 2
    while count < n_cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def length_sorted_sample(texts: Sequence[str], size: int) -> list[str]:
    """`size` texts that keep the length distribution of `texts` (every k-th by length),
    shortest first."""
    by_length = sorted(texts, key=len)
    if size >= len(by_length):
        return by_length
    step = len(by_length) / size
    return [by_length[int((index + 0.5) * step)] for index in range(size)]


def inprocess_bench(
    runtime_dir: str | Path,
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int],
    cpus: Sequence[int],
    thread_counts: Sequence[int] | None = None,
    warmup_batches: int = 3,
    min_batches: int = 10,
    min_duration_s: float = 3.0,
    sorted_batch_sizes: Sequence[int] = (),
    sorted_sample_texts: int = 256,
) -> list[dict[str, Any]]:
    """Latency per batch and sequences/s of one runtime, pinned to `cpus`.

    `payload` order: batches take consecutive payloads (wrapping around), so every runtime
    sees the same batches; a cell runs until it has `min_batches` batches and
    `min_duration_s` seconds, after `warmup_batches` untimed ones. `sorted` order (for
    `sorted_batch_sizes`): whole passes over `length_sorted_sample(texts,
    sorted_sample_texts)` in batches of neighbours by length, as many as `min_duration_s`
    needs (at least one). Each batch's time includes tokenization, as in the service.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    thread_counts = list(thread_counts or bench_thread_counts(len(cpus)))
    provenance = read_provenance(runtime_dir)
    rows = []
    cells = [("payload", size) for size in batch_sizes]
    cells += [("sorted", size) for size in sorted_batch_sizes]
    sample = length_sorted_sample(texts, sorted_sample_texts)
    for threads in thread_counts:
        classifier = load_runtime(runtime_dir, threads=threads)
        for order, batch_size in cells:
            if order == "payload":
                position = 0

                def next_batch(size: int = batch_size) -> list[str]:
                    nonlocal position
                    batch = [texts[(position + i) % len(texts)] for i in range(size)]
                    position = (position + size) % len(texts)
                    return batch

                batches_needed = min_batches
            else:
                plan = [sample[i : i + batch_size] for i in range(0, len(sample), batch_size)]
                cursor = 0

                def next_batch(plan: list[list[str]] = plan) -> list[str]:
                    nonlocal cursor
                    batch = plan[cursor % len(plan)]
                    cursor += 1
                    return batch

                batches_needed = len(plan)

            for _ in range(warmup_batches):
                classifier.predict_proba(next_batch())
            if order == "sorted":
                cursor = 0  # timed passes start at the shortest texts
            latencies_s = []
            padded_tokens = []
            started = time.perf_counter()
            while (
                len(latencies_s) < batches_needed or time.perf_counter() - started < min_duration_s
            ):
                batch = next_batch()
                t0 = time.perf_counter()
                classifier.predict_proba(batch)
                latencies_s.append(time.perf_counter() - t0)
                padded_tokens.append(len(batch) * classifier.encode(batch)[0].shape[1])
            if order == "sorted":  # whole passes only: every length counts alike
                whole = len(latencies_s) - len(latencies_s) % len(plan)
                latencies_s, padded_tokens = latencies_s[:whole], padded_tokens[:whole]
            latencies_ms = np.array(latencies_s) * 1000.0
            texts_timed = (
                batch_size * len(latencies_s)
                if order == "payload"
                else len(sample) * len(latencies_s) // len(plan)
            )
            rows.append(
                {
                    "model": provenance.get("model_name"),
                    "weights": provenance.get("weights"),
                    "runtime": provenance["runtime"],
                    "order": order,
                    "batch_size": batch_size,
                    "threads": threads,
                    "cpus": " ".join(str(cpu) for cpu in sorted(cpus)),
                    "n_batches": len(latencies_ms),
                    "median_ms": float(np.median(latencies_ms)),
                    "p99_ms": float(np.percentile(latencies_ms, 99)),
                    "mean_ms": float(latencies_ms.mean()),
                    "min_ms": float(latencies_ms.min()),
                    "sequences_per_s": float(texts_timed / sum(latencies_s)),
                    "mean_padded_tokens_per_batch": float(np.mean(padded_tokens)),
                }
            )
            logger.info("%s", rows[-1])
        del classifier
    return rows


def _cell_options(bench_config: dict[str, Any]) -> dict[str, Any]:
    """How long each cell runs (`model.inprocess_bench`), as inprocess_bench's options."""
    return {
        "warmup_batches": int(bench_config["warmup_batches"]),
        "min_batches": int(bench_config["min_batches"]),
        "min_duration_s": float(bench_config["min_duration_s"]),
        "sorted_sample_texts": int(bench_config["sorted_sample_texts"]),
    }


def write_inprocess_bench(
    runtime_dir: str | Path,
    payloads_csv: str | Path,
    out_csv: str | Path,
    *,
    bench_config: dict[str, Any],
    cpus: Sequence[int],
) -> pd.DataFrame:
    """inprocess_bench.csv of one runtime (see `inprocess_bench`)."""
    texts = read_payloads(payloads_csv)["text"].tolist()
    rows = inprocess_bench(
        runtime_dir,
        texts,
        batch_sizes=bench_config["batch_sizes"],
        cpus=cpus,
        sorted_batch_sizes=bench_config["sorted_batch_sizes"],
        **_cell_options(bench_config),
    )
    table = pd.DataFrame(rows)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, float_format="%.6g")
    return table


def ceiling_cell_texts_per_s(
    runtime_dir: str | Path,
    payloads_csv: str | Path,
    ceiling: Ceiling,
    *,
    bench_config: dict[str, Any],
    cpus: Sequence[int],
    timeout_s: float = 600.0,
) -> float:
    """The texts/s of a ceiling's strategy (its order, batch size and threads) measured again
    with the model stage's settings, in a process of its own (the bench pins the process
    that runs it to `cpus`): the calibration measures the ceiling beside its search, so that
    the serving efficiency divides two measurements of the same minutes."""
    command = [
        sys.executable,
        "-m",
        "servebench.model.bench",
        str(runtime_dir),
        str(payloads_csv),
        "--order",
        ceiling.order,
        "--batch-size",
        str(ceiling.batch_size),
        "--threads",
        str(ceiling.threads),
        "--cpus",
        ",".join(str(cpu) for cpu in cpus),
        "--bench-config",
        json.dumps(bench_config),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"the in-process bench exited {done.returncode}: {' | '.join(tail)}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["sequences_per_s"])


def main(argv: Sequence[str] | None = None) -> None:
    """One cell of the in-process bench; prints its row as JSON (ceiling_cell_texts_per_s)."""
    parser = argparse.ArgumentParser(prog="python -m servebench.model.bench")
    parser.add_argument("runtime_dir", type=Path)
    parser.add_argument("payloads_csv", type=Path)
    parser.add_argument("--order", choices=("payload", "sorted"), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--cpus", required=True, help="comma-separated core ids")
    parser.add_argument("--bench-config", type=json.loads, required=True, help="JSON")
    args = parser.parse_args(argv)
    rows = inprocess_bench(
        args.runtime_dir,
        read_payloads(args.payloads_csv)["text"].tolist(),
        batch_sizes=[args.batch_size] if args.order == "payload" else [],
        cpus=[int(cpu) for cpu in args.cpus.split(",")],
        thread_counts=[args.threads],
        sorted_batch_sizes=[args.batch_size] if args.order == "sorted" else [],
        **_cell_options(args.bench_config),
    )
    print(json.dumps(rows[0]))


if __name__ == "__main__":
    main()
