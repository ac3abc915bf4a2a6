"""In-process measurements behind the service's optimizations (docs/service.md).

    .venv/bin/servebench bench service-internals

Pinned to `cpus.server`, with the model stage's runtimes (results/model/<model>/...) and
payloads (results/data/payloads.csv). Writes results/benchmarks/service_internals.csv, one row
per measurement:
- sub_batching: sequences/s of batches of `batch_size` consecutive payloads, as one padded
  batch (sub_batch_size 0) or sorted by token length in sub-batches (what the service runs);
- gc_pause: a full gc.collect() with BentoML and the runtime loaded, before and after
  gc.freeze();
- int8_batch_composition: label agreement and largest probability difference between texts
  classified one at a time and in batches (sorted sub-batches), per runtime.
"""

from __future__ import annotations

import csv
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from servebench.bench import bench_parser
from servebench.bento import SERVICE_DIR
from servebench.config import BUNDLED_CORPUS, load_config
from servebench.model.resolve import resolve_model
from servebench.model.runtime import load_runtime
from servebench.payloads import read_texts

# The service's own code, as the Bento runs it.
sys.path.insert(0, str(SERVICE_DIR))
from sentiment_inference import predict_proba_sorted  # noqa: E402

FIELDS = ["measurement", "runtime", "setting", "value", "unit", "n_texts"]


def sub_batching(
    classifier: Any, texts: list[str], batch_size: int, sizes: list[int], min_duration_s: float
) -> list[tuple]:
    rows = []
    for size in sizes:
        predict_proba_sorted(classifier, texts[:batch_size], size)  # warm-up
        done, position = 0, 0
        started = time.perf_counter()
        while time.perf_counter() - started < min_duration_s or done < 2 * batch_size:
            batch = [texts[(position + i) % len(texts)] for i in range(batch_size)]
            position = (position + batch_size) % len(texts)
            predict_proba_sorted(classifier, batch, size)
            done += batch_size
        rate = done / (time.perf_counter() - started)
        setting = f"batch {batch_size}, " + (
            "one padded batch" if size == 0 else f"sorted sub-batches of {size}"
        )
        rows.append(("sub_batching", setting, round(rate, 2), "sequences_per_s", done))
        print(f"  {setting}: {rate:.1f} seq/s", flush=True)
    return rows


def gc_pause() -> list[tuple]:
    def pause_ms() -> float:
        started = time.perf_counter()
        gc.collect()
        return (time.perf_counter() - started) * 1000

    tracked = len(gc.get_objects())
    before = min(pause_ms() for _ in range(3))
    gc.freeze()
    after = min(pause_ms() for _ in range(3))
    gc.unfreeze()
    return [
        ("gc_pause", "full gc.collect(), before gc.freeze()", round(before, 2), "ms", tracked),
        ("gc_pause", "full gc.collect(), after gc.freeze()", round(after, 3), "ms", tracked),
    ]


def batch_composition(
    classifier: Any, texts: list[str], batch_size: int, sub_batch_size: int
) -> list[tuple]:
    single = np.vstack([classifier.predict_proba([text]) for text in texts])
    batched = np.vstack(
        [
            predict_proba_sorted(classifier, texts[i : i + batch_size], sub_batch_size)
            for i in range(0, len(texts), batch_size)
        ]
    )
    setting = f"one at a time vs batches of {batch_size} in sorted sub-batches of {sub_batch_size}"
    agreement = float((single.argmax(1) == batched.argmax(1)).mean())
    return [
        (
            "batch_composition",
            setting + ": label agreement",
            round(agreement, 4),
            "share",
            len(texts),
        ),
        (
            "batch_composition",
            setting + ": largest probability difference",
            round(float(np.abs(single - batched).max()), 5),
            "probability",
            len(texts),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    parser.add_argument("--configfile", action="append", default=[], type=Path)
    parser.add_argument("--runtimes", nargs="+", default=["onnx-int8", "pytorch"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sub-batch-sizes", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    parser.add_argument("--min-duration-s", type=float, default=8.0)
    parser.add_argument("--composition-texts", type=int, default=320)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    config = load_config(*args.configfile)
    os.sched_setaffinity(0, config["cpus"]["server"])
    model_dir = Path(config["results_dir"], "model", resolve_model(config["model"]).name)
    payloads = Path(config["results_dir"], "data", "payloads.csv")
    texts = read_texts(payloads if payloads.is_file() else BUNDLED_CORPUS)
    import bentoml  # noqa: F401  (a worker has BentoML loaded too: part of the GC's work)

    rows = []
    for runtime in args.runtimes:
        print(f"{runtime}:", flush=True)
        classifier = load_runtime(model_dir / runtime, threads=1)
        classifier.predict_proba(texts[:4])
        for row in gc_pause():
            rows.append((row[0], runtime, *row[1:]))
        sizes = args.sub_batch_sizes if runtime == "onnx-int8" else [0, 4]
        for row in sub_batching(classifier, texts, args.batch_size, sizes, args.min_duration_s):
            rows.append((row[0], runtime, *row[1:]))
        composition = texts[: args.composition_texts]
        for row in batch_composition(classifier, composition, args.batch_size, 4):
            rows.append((row[0], runtime, *row[1:]))
        del classifier
        gc.collect()
    out = args.out or Path(config["results_dir"], "benchmarks", "service_internals.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    for row in rows:
        print(" | ".join(str(part) for part in row))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
