"""The in-process ceiling: latency and throughput per runtime, batch size and thread count,
pinned to the server's cores (what the served system is compared with)."""

from __future__ import annotations

import logging
import os
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

logger = logging.getLogger("servebench.model")


def bench_thread_counts(n_cores: int) -> list[int]:
    """1, 2, 4, ... up to the server's cores, and the core count itself."""
    counts = {1, n_cores}
    count = 2
    while count < n_cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


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
) -> list[dict[str, Any]]:
    """Latency per batch and sequences/s of one runtime, pinned to `cpus`.

    Batches take consecutive payloads in payload order (wrapping around), so every runtime
    sees the same batches; each batch's time includes tokenization, as in the service. A cell
    runs until it has `min_batches` batches and `min_duration_s` seconds, after
    `warmup_batches` untimed ones.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    thread_counts = list(thread_counts or bench_thread_counts(len(cpus)))
    provenance = read_provenance(runtime_dir)
    rows = []
    for threads in thread_counts:
        classifier = load_runtime(runtime_dir, threads=threads)
        for batch_size in batch_sizes:
            position = 0

            def next_batch(size: int = batch_size) -> list[str]:
                nonlocal position
                batch = [texts[(position + i) % len(texts)] for i in range(size)]
                position = (position + size) % len(texts)
                return batch

            for _ in range(warmup_batches):
                classifier.predict_proba(next_batch())
            latencies_s = []
            padded_tokens = []
            started = time.perf_counter()
            while len(latencies_s) < min_batches or time.perf_counter() - started < min_duration_s:
                batch = next_batch()
                t0 = time.perf_counter()
                classifier.predict_proba(batch)
                latencies_s.append(time.perf_counter() - t0)
                padded_tokens.append(len(batch) * classifier.encode(batch)[0].shape[1])
            latencies_ms = np.array(latencies_s) * 1000.0
            rows.append(
                {
                    "model": provenance.get("model_name"),
                    "weights": provenance.get("weights"),
                    "runtime": provenance["runtime"],
                    "batch_size": batch_size,
                    "threads": threads,
                    "cpus": " ".join(str(cpu) for cpu in sorted(cpus)),
                    "n_batches": len(latencies_ms),
                    "median_ms": float(np.median(latencies_ms)),
                    "p99_ms": float(np.percentile(latencies_ms, 99)),
                    "mean_ms": float(latencies_ms.mean()),
                    "min_ms": float(latencies_ms.min()),
                    "sequences_per_s": float(batch_size * len(latencies_s) / sum(latencies_s)),
                    "mean_padded_tokens_per_batch": float(np.mean(padded_tokens)),
                }
            )
            logger.info("%s", rows[-1])
        del classifier
    return rows


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
        warmup_batches=int(bench_config["warmup_batches"]),
        min_batches=int(bench_config["min_batches"]),
        min_duration_s=float(bench_config["min_duration_s"]),
    )
    table = pd.DataFrame(rows)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, float_format="%.6g")
    return table
