"""Capacity of one load generator process: the highest rate it sends on schedule.

Run by hand (it holds the machine for a minute or two; take the heavy lock):

    .venv/bin/servebench bench loadgen-capacity

A trivial server (`servebench.loadgen.testserver --raw`: 200 to everything, many times faster
than the generator) runs on `cpus.server`; one standalone Locust process runs on
`cpus.loadgen` (one core by default) and offers open-loop exponential traffic at rising
rates, then bisects between the last rate it sustained and the first it did not. A rate is
*sustained* when the send-lag p99 stays under 5 ms, the achieved rate is within 2% of the
offered one and every request is answered; a rate that is not sustained is tried once more
(`--retries`), since on a shared machine another process can take the generator's core for
a moment, which says nothing of the generator. Whether the run is also *valid* by all of the
study's rules (generator CPU under 90% among them) is recorded next to it: the study keeps its
rates below the highest valid one.

Writes results/benchmarks/loadgen_capacity.csv (one row per rate tried) and prints the
highest sustained and the highest valid rate.
"""

from __future__ import annotations

import argparse
import csv
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servebench.bench import bench_parser
from servebench.config import load_config
from servebench.loadgen import run_loadtest
from servebench.provenance import cpu_info, git_commit

FIELDS = [
    "rate_rps",
    "attempt",
    "duration_s",
    "offered_rate_rps",
    "achieved_rate_rps",
    "send_lag_p50_ms",
    "send_lag_p99_ms",
    "send_lag_max_ms",
    "generator_cpu_percent",
    "latency_p50_ms",
    "latency_p99_ms",
    "ok",
    "not_ok",
    "sustained",
    "valid",
    "invalid_reasons",
    "loadgen_cpus",
    "server_cpus",
    "cpu_model",
    "git_commit",
    "measured_at",
]
SEND_LAG_P99_MAX_MS = 5.0
RATE_TOLERANCE = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cpus: list[int]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "servebench.loadgen.testserver", "--raw", "--port", str(port),
         "--cpus", ",".join(map(str, cpus))]
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the trivial server did not start") from None
            time.sleep(0.1)


def measure_with_retries(
    url: str, rate: float, args: argparse.Namespace, work: Path, rows: list[dict[str, Any]]
) -> bool:
    """Whether `rate` is sustained in one of 1 + retries attempts (every attempt is a row)."""
    for attempt in range(1 + args.retries):
        row = measure(url, rate, args, work / f"rate{rate:.0f}_{attempt}")
        rows.append({**row, "attempt": attempt})
        if row["sustained"]:
            return True
    return False


def measure(url: str, rate: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    summary = run_loadtest(
        host=url,
        out_dir=out,
        seed=args.seed,
        arrival="exponential",
        rate_rps=rate,
        duration_s=args.duration_s,
        warmup_s=args.warmup_s,
        payloads=args.payloads,
        endpoint="/ok",
        workers=1,
        cpus=args.loadgen_cpus,
        max_in_flight=args.max_in_flight,
        overflow="delay",
        timeout_s=10.0,
        progress=False,
    )
    counts = summary["counts"]
    lag = summary["send_lag_p99_ms"]
    offered, achieved = summary["offered_rate_rps"], summary["achieved_rate_rps"]
    not_ok = sum(counts.values()) - counts["ok"]
    sustained = (
        lag is not None
        and lag < SEND_LAG_P99_MAX_MS
        and abs(achieved - offered) <= RATE_TOLERANCE * offered
        and not_ok == 0
        and summary["missing_requests"] == 0
    )
    row = {
        "rate_rps": rate,
        "duration_s": args.duration_s,
        "offered_rate_rps": round(offered, 1),
        "achieved_rate_rps": round(achieved, 1),
        "send_lag_p50_ms": round(summary["send_lag_p50_ms"], 3),
        "send_lag_p99_ms": round(lag, 3),
        "send_lag_max_ms": round(summary["send_lag_max_ms"], 3),
        "generator_cpu_percent": summary["generator_cpu_percent"]
        and round(summary["generator_cpu_percent"], 1),
        "latency_p50_ms": summary["latency_p50_ms"] and round(summary["latency_p50_ms"], 3),
        "latency_p99_ms": summary["latency_p99_ms"] and round(summary["latency_p99_ms"], 3),
        "ok": counts["ok"],
        "not_ok": not_ok,
        "sustained": sustained,
        "valid": summary["valid"],
        "invalid_reasons": "; ".join(summary["invalid_reasons"]),
    }
    print(
        f"{rate:8.0f} req/s: achieved {achieved:8.1f}, send lag p99 {lag:7.2f} ms, "
        f"CPU {row['generator_cpu_percent']}%, "
        f"{'sustained' if sustained else 'NOT sustained'}, {'valid' if row['valid'] else 'invalid'}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    config = load_config()
    parser = bench_parser(__file__, __doc__)
    parser.add_argument(
        "--rates",
        default="1000,2000,3000,4000,5000,6000,8000,10000",
        help="rising rates to try (req/s), comma-separated",
    )
    parser.add_argument("--bisect-steps", type=int, default=3)
    parser.add_argument("--retries", type=int, default=1, help="more attempts at a failed rate")
    parser.add_argument("--duration-s", type=float, default=6.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=config["seed"])
    parser.add_argument("--max-in-flight", type=int, default=1000)
    parser.add_argument("--payloads", type=Path, help="CSV with a text column (default: one text)")
    parser.add_argument("--server-cpus", default=",".join(map(str, config["cpus"]["server"])))
    parser.add_argument("--loadgen-cpus", default=",".join(map(str, config["cpus"]["loadgen"])))
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/loadgen_capacity.csv"))
    args = parser.parse_args(argv)
    server_cpus = [int(cpu) for cpu in args.server_cpus.split(",")]
    common = {
        "loadgen_cpus": args.loadgen_cpus,
        "server_cpus": args.server_cpus,
        "cpu_model": cpu_info()["model"],
        "git_commit": git_commit(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    rows: list[dict[str, Any]] = []
    best: float | None = None  # highest rate sustained
    worst: float | None = None  # lowest rate not sustained
    with tempfile.TemporaryDirectory(prefix="loadgen_capacity_") as temporary:
        work = Path(temporary)
        if args.payloads is None:
            args.payloads = work / "texts.csv"
            args.payloads.write_text("text\nThe service was quick and the answer was right.\n")
        process, url = start_server(server_cpus)
        try:
            for rate in [float(r) for r in args.rates.split(",")]:
                if measure_with_retries(url, rate, args, work, rows):
                    best = rate
                else:
                    worst = rate
                    break
            if best is not None and worst is not None:
                for _ in range(args.bisect_steps):
                    rate = round((best + worst) / 2, -1)
                    if rate in (best, worst):
                        break
                    if measure_with_retries(url, rate, args, work, rows):
                        best = rate
                    else:
                        worst = rate
        finally:
            process.terminate()
            process.wait(timeout=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["rate_rps"], r["attempt"])):
            writer.writerow({**row, **common})
    print(f"highest sustained rate (send-lag p99 < 5 ms): {best or 0:.0f} req/s")
    valid = [r["rate_rps"] for r in rows if r["valid"] and r["rate_rps"] <= (best or 0)]
    print(f"highest of those valid by every rule of the study: {max(valid, default=0):.0f} req/s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
