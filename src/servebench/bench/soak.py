"""Soak: a long open-loop run near capacity with bad requests mixed in; nothing may fail, leak
or restart.

    .venv/bin/servebench bench soak                  # 10 minutes, optimized variant
    .venv/bin/servebench bench soak --duration 60    # a short smoke run

The variant's Bento (results/bentos/<variant>.json) is served locally as in the study (pinned
to cpus.server, monitored), and the load generator sends a Poisson schedule at `--utilization`
(0.7) of the variant's saturation throughput (results/calibration/local/<variant>/capacity.json
`saturation_rps`; `--rate` sets it directly) for `--duration` seconds: the normal load test
files (requests.parquet, summary.json ...) record every valid request's outcome. Beside it, a
thread of this process on the generator's cores sends the bad requests, `--bad-share` (5 %) of
all requests, Poisson too: malformed JSON, unknown fields, wrong types, empty texts, too many
texts, a text too long, texts over the token limit, and bodies over the body limit (with a
Content-Length, and chunked); each with its status in bad_requests.csv, none counted in the
valid load. Every `--sample-interval` seconds each server process's pid, role and RSS go to
processes.csv.

Written into results/benchmarks/soak/<variant>/ (plus one row in results/benchmarks/soak.csv):
soak.json with the verdict: no valid request failed, each worker's RSS grew by less than
`--max-growth` (10 %) from the end of the warm-up to the end of the run (medians of the first
and last `--growth-window` seconds), no server process was replaced (the same pids from start
to end), every bad request got a 4xx.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import random
import select
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import psutil

from servebench.bench import bench_parser
from servebench.bento import SERVICE_DIR
from servebench.config import load_config
from servebench.deploy import deployed
from servebench.errors import UserError
from servebench.jobs.common import clear_dir, measured_loadtest, read_json
from servebench.layout import CAPACITY, REQUESTS, Layout
from servebench.provenance import environment, write_json
from servebench.settings import LoadgenSettings, LocalTarget, deploy_target

# The service's own limits code, as the Bento runs it.
sys.path.insert(0, str(SERVICE_DIR))
from sentiment_inference import body_limits, request_token_limit  # noqa: E402

log = logging.getLogger("servebench.bench.soak")

ROUTE = "/classify_batch"
# Bytes of body sent per write of a chunked upload, and sent of a Content-Length one.
CHUNK_BYTES = 64 * 1024
BAD_TIMEOUT_S = 30.0
SOAK_CSV_FIELDS = [
    "variant",
    "bento_tag",
    "duration_s",
    "warmup_s",
    "rate_rps",
    "bad_rate_rps",
    "valid_requests",
    "valid_not_ok",
    "bad_requests",
    "bad_not_4xx",
    "worker_rss_growth_max_percent",
    "server_processes_replaced",
    "load_valid",
    "passed",
    "measured_at",
]


@dataclass(frozen=True)
class BadRequest:
    """One kind of bad request: its raw body (None: built on the wire) and how it is sent."""

    kind: str
    body: bytes | None
    mode: str = "plain"  # plain | over-content-length | over-chunked


def longest_text(max_text_chars: int) -> str:
    """The longest valid text, in words of a few characters: it holds far more than the model's
    max_length tokens, so it counts max_length tokens after truncation. Exactly max_text_chars
    long (a cut that ends on a space ends on a full stop instead)."""
    text = ("word " * (max_text_chars // 5 + 1))[:max_text_chars].rstrip()
    return text.ljust(max_text_chars, ".")


def bad_requests(limits: dict[str, Any], max_length: int) -> list[BadRequest]:
    """The bad requests of the soak, one per kind, for the service's `limits` (variant.json's)
    and the model's max_length in tokens."""
    max_text_chars = int(limits["max_text_chars"])
    max_batch_texts = int(limits["max_batch_texts"])
    token_limit = request_token_limit(max_length, max_batch_texts, limits.get("max_request_tokens"))
    long_text = longest_text(max_text_chars)
    over_tokens = min(max_batch_texts, token_limit // max_length + 1)

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode("utf-8")

    kinds = [
        BadRequest("malformed-json", b'{"texts": ["an unfinished'),
        BadRequest("unknown-field", dumps({"texts": ["fine"], "extra": 1})),
        BadRequest("wrong-type", dumps({"texts": ["fine", 3]})),
        BadRequest("empty-text", dumps({"texts": [""]})),
        BadRequest("too-many-texts", dumps({"texts": ["ok"] * (max_batch_texts + 1)})),
        BadRequest("text-too-long", dumps({"texts": ["x" * (max_text_chars + 1)]})),
        BadRequest("over-content-length", None, "over-content-length"),
        BadRequest("over-chunked", None, "over-chunked"),
    ]
    if over_tokens * max_length > token_limit and over_tokens <= max_batch_texts:
        kinds.append(BadRequest("over-token-limit", dumps({"texts": [long_text] * over_tokens})))
    return kinds


def _status_of(data: bytes) -> int:
    """The status code of an HTTP response's first line (0 when there is none)."""
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0


def send_bad(host: str, port: int, request: BadRequest, max_body_bytes: int) -> tuple[int, str]:
    """Send one bad request on a fresh connection; (status, note). Bodies over the limit are
    sent only until the server answers: it must answer 413 before reading them."""
    with socket.create_connection((host, port), timeout=BAD_TIMEOUT_S) as sock:
        head = f"POST {ROUTE} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        if request.mode == "plain":
            assert request.body is not None
            sock.sendall(
                f"{head}Content-Length: {len(request.body)}\r\nConnection: close\r\n\r\n".encode()
                + request.body
            )
        elif request.mode == "over-content-length":
            declared = max_body_bytes + 1
            sock.sendall(f"{head}Content-Length: {declared}\r\nConnection: close\r\n\r\n".encode())
            sock.sendall(b'{"texts": ["' + b"x" * (CHUNK_BYTES - 12))
        else:
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
            chunk = b"x" * CHUNK_BYTES
            sent = 0
            while sent <= max_body_bytes + CHUNK_BYTES:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # the server answered before the end of the body
                    break
                try:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                except OSError:  # it closed the connection after answering
                    break
                sent += len(chunk)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in data:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
    return _status_of(data), ""


class BadSender(threading.Thread):
    """Bad requests on a Poisson schedule of `rate_rps` for `duration_s`, kinds in a seeded
    shuffled cycle; one row per request (bad_requests.csv)."""

    def __init__(
        self,
        url: str,
        kinds: Sequence[BadRequest],
        rate_rps: float,
        duration_s: float,
        max_body_bytes: int,
        cpus: Sequence[int],
        seed: int,
    ) -> None:
        super().__init__(name="soak-bad-requests", daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self.kinds = list(kinds)
        self.rate_rps = rate_rps
        self.duration_s = duration_s
        self.max_body_bytes = max_body_bytes
        self.cpus = list(cpus)
        self.rng = random.Random(seed)
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if self.cpus:  # never on the server's cores (Linux: this thread only)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        started = time.monotonic()
        due_s = self.rng.expovariate(self.rate_rps)
        order: list[BadRequest] = []
        while due_s < self.duration_s:
            if self.stop.wait(max(0.0, started + due_s - time.monotonic())):
                return
            if not order:
                order = self.rng.sample(self.kinds, len(self.kinds))
            request = order.pop()
            sent = time.monotonic()
            try:
                status, note = send_bad(self.host, self.port, request, self.max_body_bytes)
            except OSError as error:
                status, note = 0, f"{type(error).__name__}: {error}"
            self.rows.append(
                {
                    "scheduled_s": round(due_s, 4),
                    "sent_s": round(sent - started, 4),
                    "kind": request.kind,
                    "status": status,
                    "latency_ms": round(1000.0 * (time.monotonic() - sent), 2),
                    "note": note,
                }
            )
            due_s += self.rng.expovariate(self.rate_rps)


class ProcessSampler(threading.Thread):
    """Every `interval_s`: each process of the server (its pid, role, RSS, CPU seconds used so
    far); processes.csv."""

    FIELDS = ("elapsed_s", "pid", "ppid", "role", "rss_bytes", "cpu_s", "create_time")

    def __init__(self, deployment: Any, interval_s: float, cpus: Sequence[int]) -> None:
        super().__init__(name="soak-processes", daemon=True)
        self.deployment = deployment
        self.interval_s = interval_s
        self.cpus = list(cpus)
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def sample(self) -> None:
        server = self.deployment.current
        elapsed = round(time.monotonic() - self.started, 3)
        for process in server.processes():
            with contextlib.suppress(psutil.Error):
                self.rows.append(
                    {
                        "elapsed_s": elapsed,
                        "pid": process.pid,
                        "ppid": process.ppid(),
                        "role": "main" if process.pid == server.pid else "worker",
                        "rss_bytes": process.memory_info().rss,
                        "cpu_s": round(sum(process.cpu_times()[:2]), 3),
                        "create_time": round(process.create_time(), 3),
                    }
                )

    def run(self) -> None:
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        while True:
            self.sample()
            if self.stop.wait(self.interval_s):
                self.sample()
                return


def memory_growth(
    processes: pd.DataFrame, warmup_s: float, end_s: float, window_s: float
) -> list[dict[str, Any]]:
    """Per process: median RSS over [warmup_s, warmup_s + window_s) and over
    (end_s - window_s, end_s], and the growth between them in percent."""
    rows = []
    for (pid, role), samples in processes.groupby(["pid", "role"]):
        early = samples[
            (samples["elapsed_s"] >= warmup_s) & (samples["elapsed_s"] < warmup_s + window_s)
        ]
        late = samples[samples["elapsed_s"] > end_s - window_s]
        if not len(early) or not len(late):
            continue
        start_rss = float(early["rss_bytes"].median())
        end_rss = float(late["rss_bytes"].median())
        rows.append(
            {
                "pid": int(pid),
                "role": role,
                "rss_after_warmup_bytes": int(start_rss),
                "rss_at_end_bytes": int(end_rss),
                "rss_max_bytes": int(samples["rss_bytes"].max()),
                "growth_percent": round(100.0 * (end_rss - start_rss) / start_rss, 2),
            }
        )
    return rows


def replaced_processes(processes: pd.DataFrame) -> dict[str, Any]:
    """The server's pids at the first and the last sample; a process that appeared or went away
    in between (a worker that died and was respawned) is a replacement."""
    first = processes["elapsed_s"].min()
    last = processes["elapsed_s"].max()
    at_start = set(processes.loc[processes["elapsed_s"] == first, "pid"])
    at_end = set(processes.loc[processes["elapsed_s"] == last, "pid"])
    seen = set(processes["pid"])
    return {
        "pids_at_start": sorted(int(pid) for pid in at_start),
        "pids_at_end": sorted(int(pid) for pid in at_end),
        "pids_seen": sorted(int(pid) for pid in seen),
        "replaced": len(seen - (at_start & at_end)),
    }


def saturation_rps(layout: Layout, variant: str) -> float:
    path = layout.calibration_dir("local", variant) / CAPACITY
    try:
        value = read_json(path).get("saturation_rps")
    except (OSError, ValueError):
        value = None
    if not value:
        raise UserError(
            f"no saturation_rps in {path}: calibrate the variant first (snakemake {path}) "
            "or give --rate"
        )
    return float(value)


def local_variant(
    config: dict[str, Any], layout: Layout, variant: str
) -> tuple[dict[str, Any], LocalTarget]:
    """The Bento record of `variant` and its local deployment target, for a benchmark that
    serves it locally; a UserError that says what to do when either is missing."""
    if variant not in config["variants"]:
        raise UserError(f"no variant named {variant!r}")
    record_path = layout.bento_record(variant)
    if not record_path.is_file():
        raise UserError(f"{record_path} missing: build it (snakemake {record_path})")
    target = deploy_target(config, variant)
    if not isinstance(target, LocalTarget):
        raise UserError(f"the benchmark serves {variant} locally: deploy.target must be local")
    return read_json(record_path), target


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def _append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SOAK_CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key) for key in SOAK_CSV_FIELDS})


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    parser.add_argument("--variant", default="optimized", metavar="NAME", help="variant served")
    parser.add_argument(
        "--duration", type=float, default=600.0, metavar="S", dest="duration_s",
        help="length of the load, warm-up included",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=float, default=60.0, metavar="S", dest="warmup_s",
        help="leading seconds left out of the latency figures and the memory baseline",
    )  # fmt: skip
    parser.add_argument(
        "--utilization", type=float, default=0.7, metavar="FRACTION",
        help="valid load as a fraction of the variant's calibrated saturation throughput",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=None, metavar="RPS", dest="rate_rps",
        help="valid load in req/s (instead of --utilization; no calibration needed)",
    )  # fmt: skip
    parser.add_argument(
        "--bad-share", type=float, default=0.05, metavar="FRACTION",
        help="share of all requests that are malformed or oversized",
    )  # fmt: skip
    parser.add_argument(
        "--sample-interval", type=float, default=2.0, metavar="S",
        help="seconds between samples of the server processes' pids and RSS",
    )  # fmt: skip
    parser.add_argument(
        "--growth-window", type=float, default=30.0, metavar="S",
        help="seconds whose median RSS is compared, after the warm-up and at the end",
    )  # fmt: skip
    parser.add_argument(
        "--max-growth", type=float, default=10.0, metavar="PERCENT",
        help="largest worker RSS growth that passes",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=20261129, help="seed of both schedules")
    parser.add_argument(
        "--configfile", action="append", default=[], metavar="FILE",
        help="YAML merged over config/config.yaml (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="output folder (default: <results>/benchmarks/soak/<variant>)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0 <= args.bad_share < 1 or args.duration_s <= args.warmup_s + args.growth_window:
        raise UserError(
            "--bad-share must be in [0, 1), and --duration longer than --warmup plus "
            "--growth-window"
        )

    config = load_config(*args.configfile)
    layout = Layout.of(config)
    record, target = local_variant(config, layout, args.variant)
    generator = LoadgenSettings.of(config)
    rate_rps = args.rate_rps or args.utilization * saturation_rps(layout, args.variant)
    bad_rate_rps = rate_rps * args.bad_share / (1.0 - args.bad_share)
    limits = record["settings"]["limits"]
    max_length = int(record["model_provenance"]["max_length"])
    kinds = bad_requests(limits, max_length)
    max_body_bytes = body_limits(int(limits["max_text_chars"]), int(limits["max_batch_texts"]))[
        ROUTE
    ].max_bytes
    out = args.out or layout.benchmarks_dir / "soak" / args.variant
    clear_dir(out)
    log.info(
        "soak of %s (%s): %.2f req/s valid + %.2f req/s bad for %.0f s",
        args.variant,
        record["tag"],
        rate_rps,
        bad_rate_rps,
        args.duration_s,
    )

    started_wall = time.time()
    with deployed(target, record, out) as deployment, deployment.monitored(out):
        sampler = ProcessSampler(deployment, args.sample_interval, generator.cpus)
        sender = BadSender(
            deployment.url,
            kinds,
            bad_rate_rps,
            args.duration_s,
            max_body_bytes,
            generator.cpus,
            args.seed + 1,
        )
        sampler.start()
        if bad_rate_rps > 0:
            sender.start()
        try:
            summary = measured_loadtest(
                target.cpus + generator.cpus,
                float(config["measurement"]["foreign_cpu_max_percent"]),
                int(config["measurement"]["min_requests"]),
                host=deployment.url,
                out_dir=out,
                seed=args.seed,
                arrival="exponential",
                rate_rps=rate_rps,
                duration_s=args.duration_s,
                warmup_s=args.warmup_s,
                payloads=layout.payloads_csv,
                generator=generator,
                progress=True,
                progress_interval_s=30.0,
            )
        finally:
            sender.stop.set()
            sampler.stop.set()
            sender.join(timeout=BAD_TIMEOUT_S + 5)
            sampler.join(timeout=10)

    requests = pd.read_parquet(out / REQUESTS)
    processes = pd.DataFrame(sampler.rows, columns=list(ProcessSampler.FIELDS))
    _write_csv(out / "processes.csv", sampler.rows, ProcessSampler.FIELDS)
    bad_fields = ("scheduled_s", "sent_s", "kind", "status", "latency_ms", "note")
    _write_csv(out / "bad_requests.csv", sender.rows, bad_fields)
    end_s = float(processes["elapsed_s"].max()) if len(processes) else 0.0
    growth = memory_growth(processes, args.warmup_s, end_s, args.growth_window)
    workers = [row for row in growth if row["role"] == "worker"]
    replaced = replaced_processes(processes) if len(processes) else {"replaced": None}
    bad = pd.DataFrame(sender.rows, columns=list(bad_fields))
    bad_not_4xx = int((~bad["status"].between(400, 499)).sum()) if len(bad) else 0
    valid_not_ok = int((requests["outcome"] != "ok").sum())
    max_growth = max((row["growth_percent"] for row in workers), default=None)
    checks = {
        "no_valid_request_failed": valid_not_ok == 0 and len(requests) > 0,
        "worker_memory_growth_below_max": max_growth is not None and max_growth < args.max_growth,
        "no_server_process_replaced": replaced["replaced"] == 0,
        "every_bad_request_got_a_4xx": bad_not_4xx == 0,
        "load_test_valid": bool(summary.valid),
    }
    result = {
        "variant": args.variant,
        "bento_tag": record["tag"],
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "rate_rps": round(rate_rps, 3),
        "bad_rate_rps": round(bad_rate_rps, 3),
        "utilization": None if args.rate_rps else args.utilization,
        "valid_requests": int(len(requests)),
        "valid_not_ok": valid_not_ok,
        "valid_by_outcome": {str(k): int(v) for k, v in requests["outcome"].value_counts().items()},
        "latency_p50_ms": summary.latency_p50_ms,
        "latency_p99_ms": summary.latency_p99_ms,
        "achieved_rate_rps": summary.achieved_rate_rps,
        "load_invalid_reasons": summary.invalid_reasons,
        "bad_requests": int(len(bad)),
        "bad_not_4xx": bad_not_4xx,
        "bad_by_kind_and_status": {
            f"{kind} {status}": int(count)
            for (kind, status), count in bad.groupby(["kind", "status"]).size().items()
        }
        if len(bad)
        else {},
        "bad_latency_p99_ms": float(np.percentile(bad["latency_ms"], 99)) if len(bad) else None,
        "memory": growth,
        "worker_rss_growth_max_percent": max_growth,
        "processes": replaced,
        "server_processes_replaced": replaced["replaced"],
        "checks": checks,
        "passed": all(checks.values()),
        "max_growth_percent": args.max_growth,
        "growth_window_s": args.growth_window,
        "sample_interval_s": args.sample_interval,
        "cpus": {"server": list(target.cpus), "loadgen": list(generator.cpus)},
        "started_at_s": round(started_wall, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "git_commit": environment()["git_commit"],
    }
    write_json(out / "soak.json", result)
    _append_row(layout.benchmarks_dir / "soak.csv", result)
    print(
        f"{out}: {len(requests)} valid requests ({valid_not_ok} not ok), {len(bad)} bad "
        f"({bad_not_4xx} without a 4xx), worker RSS growth {max_growth}%, "
        f"{replaced['replaced']} server processes replaced: "
        + ("PASSED" if result["passed"] else "FAILED " + str(checks))
    )
    return 0 if result["passed"] else 1
