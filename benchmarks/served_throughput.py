"""Sustained served throughput of each variant vs. the in-process ceiling of its runtime.

Run by hand (it holds the machine for minutes; take the heavy lock):

    flock /tmp/servebench-heavy.lock .venv/bin/python benchmarks/served_throughput.py \
        --variants baseline optimized

For each variant: build (or reuse) its Bento, serve it pinned to `cpus.server` (one core by
default), and offer open-loop exponential traffic with `servebench loadtest` pinned to
`cpus.loadgen`, in steps of rising rate. A step is *sustained* when the server answers at
least (1 - tolerance) of the offered rate with no error or rejection; the variant's
sustained throughput is the throughput of its highest sustained step, and its saturation
throughput the highest throughput of any step (the overloaded ones included).

The ceiling is the in-process throughput of the same runtime at the same threads
(results/model/<model>/<runtime>/inprocess_bench.csv from the model stage, or measured here
with the same function when that file is missing). Targets of issue 4: the optimized variant
serves >= 70% of onnx-int8's best in-process batched throughput and >= 8x the baseline.

Writes results/benchmarks/served_throughput.csv (one row per variant, rows of other variants
kept, so variants can be run one at a time) and served_throughput_steps.csv (every step).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from servebench import bento, model  # noqa: E402
from servebench.config import load_config  # noqa: E402
from servebench.deploy.local import http_get, local_server, monitor, parse_metrics  # noqa: E402
from servebench.provenance import git_commit  # noqa: E402

logger = logging.getLogger("served_throughput")

RESULT_FIELDS = [
    "variant",
    "runtime",
    "threads",
    "batching",
    "max_batch_size",
    "sub_batch_size",
    "sustained_rps",
    "sustained_offered_rps",
    "sustained_latency_p50_ms",
    "sustained_latency_p99_ms",
    "saturation_rps",
    "saturation_mean_batch_size",
    "inprocess_runtime",
    "inprocess_threads",
    "inprocess_batch1_seq_per_s",
    "inprocess_best_seq_per_s",
    "inprocess_best_batch_size",
    "inprocess_source",
    "sustained_over_inprocess_best",
    "inprocess_sorted_seq_per_s",
    "sustained_over_inprocess_sorted",
    "speedup_vs_baseline",
    "target_inprocess_share",
    "target_speedup",
    "targets_met",
    "model",
    "weights",
    "server_cpus",
    "loadgen_cpus",
    "step_duration_s",
    "bento_tag",
    "git_commit",
    "finished_utc",
]
STEP_FIELDS = [
    "variant",
    "step",
    "target_rate_rps",
    "offered_rate_rps",
    "achieved_rate_rps",
    "throughput_rps",
    "ok",
    "rejected",
    "failed",
    "timeout",
    "dropped",
    "latency_p50_ms",
    "latency_p99_ms",
    "mean_batch_size",
    "loadgen_valid",
    "sustained",
    "out_dir",
]


def ensure_runtimes(model_dir: Path, runtimes: set[str], config: dict, prepare: bool) -> None:
    """The runtime directories, prepared with servebench.model when asked and missing."""
    missing = [rt for rt in sorted(runtimes) if not (model_dir / rt / "provenance.json").is_file()]
    if not missing:
        return
    if not prepare:
        raise SystemExit(
            f"missing runtimes {missing} under {model_dir}: run the model stage "
            "(snakemake ... results/model/...) or pass --prepare-model"
        )
    resolution = model.resolve_model(config["model"])
    if not (model_dir / "pytorch" / "provenance.json").is_file():
        logger.info("preparing pytorch runtime in %s", model_dir)
        model.prepare_pytorch(config["model"], model_dir / "pytorch", resolution=resolution)
    if {"onnx", "onnx-int8"} & set(missing) and not (
        model_dir / "onnx" / "provenance.json"
    ).is_file():
        logger.info("exporting onnx")
        model.export_onnx(model_dir / "pytorch", model_dir / "onnx")
    if "onnx-int8" in missing:
        logger.info("quantizing onnx-int8")
        model.quantize_onnx(model_dir / "onnx", model_dir / "onnx-int8")


def inprocess_ceiling(
    runtime_dir: Path,
    threads: int,
    texts: list[str],
    config: dict,
    out_dir: Path,
) -> dict[str, Any]:
    """Best and batch-1 in-process sequences/s of a runtime at `threads`, from the model
    stage's inprocess_bench.csv or measured here with the same function."""
    import pandas as pd

    path = runtime_dir / "inprocess_bench.csv"
    source = str(path)
    rows = pd.read_csv(path) if path.is_file() else None
    if rows is None or not (rows["threads"] == threads).any():
        bench = config["model"]["inprocess_bench"]
        affinity = os.sched_getaffinity(0)  # inprocess_bench pins the calling process
        try:
            measured = model.inprocess_bench(
                runtime_dir,
                texts,
                batch_sizes=bench["batch_sizes"],
                cpus=config["cpus"]["server"],
                thread_counts=[threads],
                warmup_batches=bench["warmup_batches"],
                min_batches=bench["min_batches"],
                min_duration_s=bench["min_duration_s"],
            )
        finally:
            os.sched_setaffinity(0, affinity)
        rows = pd.DataFrame(measured)
        path = out_dir / f"inprocess_{runtime_dir.name}_threads{threads}.csv"
        rows.to_csv(path, index=False)
        source = f"measured here: {path}"
    rows = rows[rows["threads"] == threads]
    best = rows.loc[rows["sequences_per_s"].idxmax()]
    batch1 = rows[rows["batch_size"] == 1]
    return {
        "inprocess_runtime": runtime_dir.name,
        "inprocess_threads": threads,
        "inprocess_batch1_seq_per_s": float(batch1["sequences_per_s"].iloc[0])
        if len(batch1)
        else None,
        "inprocess_best_seq_per_s": float(best["sequences_per_s"]),
        "inprocess_best_batch_size": int(best["batch_size"]),
        "inprocess_source": source,
    }


def sorted_ceiling(
    runtime_dir: Path,
    threads: int,
    texts: list[str],
    batch_size: int,
    sub_batch_size: int,
    cpus: list[int],
    min_duration_s: float = 10.0,
) -> float:
    """In-process sequences/s of what the optimized worker runs: batches of `batch_size`
    consecutive payloads, sorted by token length, in sub-batches of `sub_batch_size`."""
    sys.path.insert(0, str(REPO_ROOT / "services" / "sentiment"))
    from sentiment_inference import predict_proba_sorted

    from servebench.runtime import load_runtime

    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        classifier = load_runtime(runtime_dir, threads=threads)
        predict_proba_sorted(classifier, texts[:batch_size], sub_batch_size)  # warm-up
        done = 0
        position = 0
        started = time.perf_counter()
        while time.perf_counter() - started < min_duration_s:
            batch = [texts[(position + i) % len(texts)] for i in range(batch_size)]
            position = (position + batch_size) % len(texts)
            predict_proba_sorted(classifier, batch, sub_batch_size)
            done += batch_size
        return done / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, affinity)


def batch_counters(url: str) -> tuple[float, float]:
    """(sum, count) of BentoML's adaptive batch size histogram for /classify_batch."""
    status, body = http_get(url + "/metrics", timeout_s=5)
    total = count = 0.0
    if status == 200:
        for name, labels, value in parse_metrics(body.decode("utf-8", errors="replace")):
            if "method_name=classify_batch" not in labels:
                continue
            if name == "bentoml_service_adaptive_batch_size_sum":
                total += value
            elif name == "bentoml_service_adaptive_batch_size_count":
                count += value
    return total, count


def run_step(
    url: str,
    rate_rps: float,
    *,
    duration_s: float,
    warmup_s: float,
    seed: int,
    payloads: Path,
    loadgen_cpus: list[int],
    out_dir: Path,
    configfiles: list[Path],
) -> dict[str, Any]:
    command = [
        str(Path(sys.executable).parent / "servebench"),
        "loadtest",
        "--host",
        url,
        "--endpoint",
        "/classify_batch",
        "--arrival",
        "exponential",
        "--rate",
        f"{rate_rps:.3f}",
        "--duration",
        str(duration_s),
        "--warmup",
        str(warmup_s),
        "--seed",
        str(seed),
        "--payloads",
        str(payloads),
        "--out",
        str(out_dir),
        "--cpus",
        ",".join(map(str, loadgen_cpus)),
        "--no-progress",
    ]
    if configfiles:  # loadtest takes one file merged over config/config.yaml
        command += ["--config", str(configfiles[-1])]
    result = subprocess.run(command, capture_output=True, text=True)
    (out_dir / "loadtest.out").parent.mkdir(parents=True, exist_ok=True)
    (out_dir / "loadtest.out").write_text(result.stdout + result.stderr)
    summary_path = out_dir / "summary.json"
    if result.returncode not in (0, 1) or not summary_path.is_file():
        raise RuntimeError(
            f"servebench loadtest failed (exit {result.returncode}):\n"
            + "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        )
    return json.loads(summary_path.read_text())


def ramp(
    variant: str,
    server_url: str,
    start_rate_rps: float,
    args: argparse.Namespace,
    config: dict,
    out_dir: Path,
) -> list[dict[str, Any]]:
    """Steps of rising rate until one is not sustained (plus one overload step)."""
    steps: list[dict[str, Any]] = []
    rate = start_rate_rps
    failures_after_sustained = 0
    for index in range(args.max_steps):
        before = batch_counters(server_url)
        summary = run_step(
            server_url,
            rate,
            duration_s=args.step_duration_s,
            warmup_s=args.warmup_s,
            seed=config["seed"] + index,
            payloads=args.payloads,
            loadgen_cpus=config["cpus"]["loadgen"],
            out_dir=out_dir / f"step{index:02d}",
            configfiles=args.configfile,
        )
        after = batch_counters(server_url)
        counts = summary["counts"]
        errors = sum(counts[k] for k in ("rejected", "failed", "timeout", "dropped"))
        total = max(1, sum(counts.values()))
        throughput = summary["throughput_rps"] or 0.0
        offered = summary["offered_rate_rps"] or rate
        sustained = throughput >= (1 - args.tolerance) * offered and errors / total <= 0.001
        batches = after[1] - before[1]
        step = {
            "variant": variant,
            "step": index,
            "target_rate_rps": round(rate, 3),
            "offered_rate_rps": offered,
            "achieved_rate_rps": summary["achieved_rate_rps"],
            "throughput_rps": throughput,
            **{k: counts[k] for k in ("ok", "rejected", "failed", "timeout", "dropped")},
            "latency_p50_ms": summary.get("latency_p50_ms"),
            "latency_p99_ms": summary.get("latency_p99_ms"),
            "mean_batch_size": (after[0] - before[0]) / batches if batches else None,
            "loadgen_valid": summary.get("valid"),
            "sustained": sustained,
            "out_dir": str(out_dir / f"step{index:02d}"),
        }
        steps.append(step)
        logger.info(
            "%s step %d: offered %.1f/s, throughput %.1f/s, errors %d, p99 %s ms, batch %s -> %s",
            variant,
            index,
            offered,
            throughput,
            errors,
            step["latency_p99_ms"] and round(step["latency_p99_ms"]),
            step["mean_batch_size"] and round(step["mean_batch_size"], 2),
            "sustained" if sustained else "NOT sustained",
        )
        if not sustained:
            if not any(s["sustained"] for s in steps) and index < args.max_steps - 1:
                rate = rate / 2  # started above capacity: step back down
                continue
            failures_after_sustained += 1
            if failures_after_sustained >= 2:
                break
            # One overload step further: the saturation throughput.
            rate = rate * args.rate_factor
            continue
        rate = rate * args.rate_factor
        time.sleep(1.0)  # let the last responses drain
    return steps


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["baseline", "optimized"])
    parser.add_argument("--configfile", action="append", default=[], type=Path)
    parser.add_argument("--model-dir", type=Path, help="default: <results_dir>/model/<model>")
    parser.add_argument("--prepare-model", action="store_true", help="prepare missing runtimes")
    parser.add_argument(
        "--payloads",
        type=Path,
        default=None,
        help="default: <results_dir>/data/payloads.csv (the model stage's), else data/texts.csv",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: <results_dir>/benchmarks")
    parser.add_argument("--step-duration-s", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--start-rate", type=float, default=None, help="first step's rate")
    parser.add_argument(
        "--start-share",
        type=float,
        default=0.6,
        help="without --start-rate: first rate as a share of the in-process ceiling",
    )
    parser.add_argument("--rate-factor", type=float, default=1.15)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = load_config(*args.configfile)
    resolution = model.resolve_model(config["model"])
    model_dir = args.model_dir or Path(config["results_dir"], "model", resolution.name)
    out = args.out or Path(config["results_dir"], "benchmarks")
    work = out / "served_throughput"
    work.mkdir(parents=True, exist_ok=True)
    runtimes = {config["variants"][v]["runtime"] for v in args.variants} | {"onnx-int8"}
    ensure_runtimes(model_dir, runtimes, config, args.prepare_model)
    if args.payloads is None:
        staged = Path(config["results_dir"], "data", "payloads.csv")
        args.payloads = staged if staged.is_file() else REPO_ROOT / "data" / "texts.csv"
    texts = model.read_corpus_texts(args.payloads)
    logger.info("payloads: %s (%d texts)", args.payloads, len(texts))
    server_cpus = config["cpus"]["server"]

    results_path = out / "served_throughput.csv"
    steps_path = out / "served_throughput_steps.csv"
    results = {row["variant"]: row for row in read_rows(results_path)}
    all_steps = [row for row in read_rows(steps_path) if row["variant"] not in args.variants]
    for variant in args.variants:
        settings = bento.variant_settings(config, variant)
        threads = settings["threads_per_worker"] or len(server_cpus)
        ceiling = inprocess_ceiling(model_dir / settings["runtime"], threads, texts, config, work)
        int8 = inprocess_ceiling(model_dir / "onnx-int8", threads, texts, config, work)
        sorted_sps = None
        if settings["batching"]["enabled"] and settings["sub_batch_size"]:
            sorted_sps = sorted_ceiling(
                model_dir / settings["runtime"],
                threads,
                texts,
                settings["batching"]["max_batch_size"],
                settings["sub_batch_size"],
                server_cpus,
            )
            logger.info("%s: in-process sorted sub-batches %.1f seq/s", variant, sorted_sps)
        record = bento.build_bento(
            config,
            variant,
            model_dir / settings["runtime"],
            work / "bentos" / f"{variant}.json",
            log=work / f"bento-{variant}.log",
        )
        if args.start_rate:
            start = args.start_rate
        elif settings["batching"]["enabled"]:
            start = args.start_share * ceiling["inprocess_best_seq_per_s"]
        else:
            start = args.start_share * (
                ceiling["inprocess_batch1_seq_per_s"] or ceiling["inprocess_best_seq_per_s"]
            )
        run_dir = work / variant
        with local_server(
            record["tag"],
            bentoml_home=record["bentoml_home"],
            log_path=run_dir / "server.log",
            cpus=server_cpus,
            ready_timeout_s=float(config["deploy"]["ready_timeout_s"]),
        ) as server:
            with monitor(server, run_dir):
                steps = ramp(variant, server.url, start, args, config, run_dir)
        all_steps += steps
        sustained = [s for s in steps if s["sustained"]]
        best = max(sustained, key=lambda s: s["throughput_rps"]) if sustained else None
        saturation = max(steps, key=lambda s: s["throughput_rps"])
        results[variant] = {
            "variant": variant,
            "runtime": settings["runtime"],
            "threads": threads,
            "batching": settings["batching"]["enabled"],
            "max_batch_size": settings["batching"]["max_batch_size"],
            "sub_batch_size": settings["sub_batch_size"],
            "sustained_rps": round(best["throughput_rps"], 2) if best else 0.0,
            "sustained_offered_rps": round(best["offered_rate_rps"], 2) if best else None,
            "sustained_latency_p50_ms": best and round(best["latency_p50_ms"], 1),
            "sustained_latency_p99_ms": best and round(best["latency_p99_ms"], 1),
            "saturation_rps": round(saturation["throughput_rps"], 2),
            "saturation_mean_batch_size": saturation["mean_batch_size"]
            and round(saturation["mean_batch_size"], 2),
            **(int8 if variant == "optimized" else ceiling),
            "inprocess_sorted_seq_per_s": sorted_sps and round(sorted_sps, 2),
            "model": resolution.name,
            "weights": resolution.weights,
            "server_cpus": " ".join(map(str, server_cpus)),
            "loadgen_cpus": " ".join(map(str, config["cpus"]["loadgen"])),
            "step_duration_s": args.step_duration_s,
            "bento_tag": record["tag"],
            "git_commit": git_commit(),
            "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_rows(steps_path, STEP_FIELDS, all_steps)

    # Ratios and targets, across whatever variants the file holds now.
    baseline = results.get("baseline")
    for row in results.values():
        sustained = float(row["sustained_rps"] or 0)
        best = float(row["inprocess_best_seq_per_s"] or 0)
        row["sustained_over_inprocess_best"] = round(sustained / best, 3) if best else None
        sorted_sps = float(row.get("inprocess_sorted_seq_per_s") or 0)
        row["sustained_over_inprocess_sorted"] = (
            round(sustained / sorted_sps, 3) if sorted_sps else None
        )
        base = float(baseline["sustained_rps"]) if baseline else 0
        row["speedup_vs_baseline"] = round(sustained / base, 2) if base else None
        if row["variant"] == "optimized":
            row["target_inprocess_share"] = 0.70
            row["target_speedup"] = 8.0
            share_ok = (row["sustained_over_inprocess_best"] or 0) >= 0.70
            speed_ok = (row["speedup_vs_baseline"] or 0) >= 8.0
            row["targets_met"] = share_ok and speed_ok
    write_rows(results_path, RESULT_FIELDS, list(results.values()))
    for row in results.values():
        logger.info(
            "%s: sustained %s req/s (saturation %s), in-process best %s seq/s (%s), "
            "share %s, speedup vs baseline %s",
            row["variant"],
            row["sustained_rps"],
            row["saturation_rps"],
            row["inprocess_best_seq_per_s"],
            row["inprocess_runtime"],
            row["sustained_over_inprocess_best"],
            row["speedup_vs_baseline"],
        )
    logger.info("wrote %s and %s", results_path, steps_path)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    sys.exit(main())
