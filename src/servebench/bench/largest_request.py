"""Largest request: how long the largest request each variant accepts takes, what memory it
needs, and how fast requests over the limits are refused.

    .venv/bin/servebench bench largest-request                      # every variant of the study
    .venv/bin/servebench bench largest-request --variant baseline   # one (repeatable)

Each variant's Bento (results/bentos/<variant>.json) is served locally as in the study (pinned
to cpus.server) and, after one small warm-up request, gets one at a time from the generator's
cores: the largest accepted request (texts of max_text_chars, as many as the token limit
admits at the model's max_length), max_batch_texts such texts (over the token limit), the same
as escaped emoji (the largest body the character limits allow), and bodies over the body limit
with a Content-Length and chunked. Every `--sample-interval` seconds each server process's
RSS and CPU time are sampled: per request, the workers' RSS before it, at its peak and after
it, and how long the workers kept computing after the answer (a 504 of a variant with a short
timeout_s shows whether inference stops at the deadline).

Written into results/benchmarks/largest_request/: largest_request.csv (a row per variant and
request; `body_bytes` of the oversized ones is the limit + 1, what was declared or would have
been sent), largest_request.json (the same with the run's facts) and per variant its server's
logs and processes.csv. Exit status 1 when a request got another status than its limits say,
or the largest accepted request was not answered within the variant's timeout_s.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from servebench.bench import bench_parser
from servebench.bench.soak import (
    ROUTE,
    BadRequest,
    ProcessSampler,
    _write_csv,
    local_variant,
    longest_text,
    send_bad,
)
from servebench.bento import SERVICE_DIR
from servebench.config import load_config
from servebench.deploy import deployed
from servebench.errors import UserError
from servebench.jobs.common import clear_dir
from servebench.layout import Layout
from servebench.provenance import environment, write_json
from servebench.settings import LoadgenSettings, LocalTarget

sys.path.insert(0, str(SERVICE_DIR))
from sentiment_inference import body_limits, request_token_limit  # noqa: E402

log = logging.getLogger("servebench.bench.largest_request")

# The workers count as idle again once they use under this share of a core over a window.
IDLE_CPU_SHARE = 0.1
IDLE_WINDOW_S = 0.25
# Seconds of idle samples taken before a request (its RSS before) and after it (its RSS after).
SETTLE_S = 0.5
FIELDS = (
    "variant",
    "runtime",
    "request",
    "texts",
    "body_bytes",
    "expected_status",
    "status",
    "as_expected",
    "elapsed_s",
    "worker_rss_before_mb",
    "worker_rss_peak_mb",
    "worker_rss_after_mb",
    "worker_busy_after_answer_s",
    "worker_pids_unchanged",
    "answer",
)


@dataclass(frozen=True)
class Case:
    """One request of the benchmark: a JSON body (None: an oversized one built on the wire by
    the soak's sender) and the status the service's limits give it."""

    name: str
    texts: int
    body: bytes | None
    expected_status: int
    mode: str = "plain"


def cases(limits: dict[str, Any], max_length: int) -> list[Case]:
    """The benchmark's requests for the service's `limits` (variant.json's) and the model's
    max_length in tokens."""
    max_text_chars = int(limits["max_text_chars"])
    max_batch_texts = int(limits["max_batch_texts"])
    token_limit = request_token_limit(max_length, max_batch_texts, limits.get("max_request_tokens"))
    accepted = min(max_batch_texts, token_limit // max_length)
    all_texts_status = 200 if max_batch_texts * max_length <= token_limit else 400
    words = longest_text(max_text_chars)
    emoji = "\U0001f600" * max_text_chars  # 12 bytes each, escaped as a surrogate pair

    def body(texts: list[str]) -> bytes:
        return json.dumps({"texts": texts}).encode("utf-8")

    return [
        Case("largest-accepted", accepted, body([words] * accepted), 200),
        Case("all-texts-words", max_batch_texts, body([words] * max_batch_texts), all_texts_status),
        Case("all-texts-emoji", max_batch_texts, body([emoji] * max_batch_texts), all_texts_status),
        Case("over-content-length", 0, None, 413, "over-content-length"),
        Case("over-chunked", 0, None, 413, "over-chunked"),
    ]


def post(url: str, body: bytes, timeout_s: float) -> tuple[int, str]:
    """POST `body` to the batch route on a fresh connection: (status, the answer's first 200
    characters)."""
    connection = http.client.HTTPConnection(*_host_port(url), timeout=timeout_s)
    try:
        connection.request("POST", ROUTE, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")[:200]
    finally:
        connection.close()


def worker_totals(samples: pd.DataFrame) -> pd.DataFrame:
    """The workers' RSS and CPU seconds summed per sample time (elapsed_s, rss_bytes, cpu_s)."""
    workers = samples[samples["role"] == "worker"]
    return workers.groupby("elapsed_s", as_index=False)[["rss_bytes", "cpu_s"]].sum()


def busy_after_s(
    totals: pd.DataFrame, from_s: float, window_s: float, idle_share: float
) -> float | None:
    """Seconds from `from_s` to the start of the first window of `window_s` in which the
    workers used less than `idle_share` of a core; None when none is sampled yet."""
    times = totals["elapsed_s"].to_numpy()
    cpu = totals["cpu_s"].to_numpy()
    for index in range(len(times)):
        if times[index] < from_s:
            continue
        end = index
        while end < len(times) and times[end] < times[index] + window_s:
            end += 1
        if end == len(times):
            return None  # the window is not complete yet
        if cpu[end] - cpu[index] < idle_share * (times[end] - times[index]):
            return max(0.0, float(times[index]) - from_s)
    return None


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def measure_variant(
    variant: str,
    record: dict[str, Any],
    target: LocalTarget,
    generator: LoadgenSettings,
    out: Path,
    interval_s: float,
) -> list[dict[str, Any]]:
    """Serve one variant and send it every case, one at a time; a row per case."""
    limits = record["settings"]["limits"]
    timeout_s = float(record["settings"]["timeout_s"])
    max_body_bytes = body_limits(int(limits["max_text_chars"]), int(limits["max_batch_texts"]))[
        ROUTE
    ].max_bytes
    rows = []
    with deployed(target, record, out) as deployment, deployment.monitored(out):
        sampler = ProcessSampler(deployment, interval_s, generator.cpus)
        sampler.start()
        # This thread sends: never from the server's cores; back on its own cores after, as
        # it starts the next variant's server.
        own_cpus = os.sched_getaffinity(0)
        if generator.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, generator.cpus)
        try:
            status, answer = post(deployment.url, json.dumps({"texts": ["warm-up"]}).encode(), 60)
            if status != 200:
                raise UserError(f"{variant}: the warm-up request got {status}: {answer}")
            for case in cases(limits, int(record["model_provenance"]["max_length"])):
                rows.append(_measure_case(case, deployment, sampler, timeout_s, max_body_bytes))
                row = rows[-1]
                log.info(
                    "%s %s: %s in %.3f s, worker RSS %s -> %s MB, busy %s s after",
                    variant,
                    case.name,
                    row["status"],
                    row["elapsed_s"],
                    row["worker_rss_before_mb"],
                    row["worker_rss_peak_mb"],
                    row["worker_busy_after_answer_s"],
                )
        finally:
            sampler.stop.set()
            sampler.join(timeout=10)
            os.sched_setaffinity(0, own_cpus)
    _write_csv(out / "processes.csv", sampler.rows, ProcessSampler.FIELDS)
    runtime = record["settings"]["runtime"]
    return [{"variant": variant, "runtime": runtime, **row} for row in rows]


def _measure_case(
    case: Case,
    deployment: Any,
    sampler: ProcessSampler,
    timeout_s: float,
    max_body_bytes: int,
) -> dict[str, Any]:
    def now_s() -> float:
        return time.monotonic() - sampler.started

    def totals() -> pd.DataFrame:
        return worker_totals(pd.DataFrame(list(sampler.rows), columns=list(ProcessSampler.FIELDS)))

    def pids() -> set[int]:
        return {process.pid for process in deployment.current.processes()}

    time.sleep(SETTLE_S)
    pids_before = pids()
    sent_s = now_s()
    if case.body is None:
        status, answer = send_bad(
            *_host_port(deployment.url), BadRequest(case.name, None, case.mode), max_body_bytes
        )
        body_bytes = max_body_bytes + 1
    else:
        try:
            status, answer = post(deployment.url, case.body, timeout_s + 60.0)
        except OSError as error:
            status, answer = 0, f"{type(error).__name__}: {error}"
        body_bytes = len(case.body)
    answered_s = now_s()
    busy_s = None
    while busy_s is None and now_s() < answered_s + timeout_s + 60.0:
        time.sleep(IDLE_WINDOW_S)
        busy_s = busy_after_s(totals(), answered_s, IDLE_WINDOW_S, IDLE_CPU_SHARE)
    time.sleep(SETTLE_S)
    samples = totals()
    rss = samples.set_index("elapsed_s")["rss_bytes"]
    idle_s = answered_s + (busy_s or 0.0)
    before = rss[(rss.index >= sent_s - SETTLE_S) & (rss.index < sent_s)]
    during = rss[(rss.index >= sent_s) & (rss.index <= idle_s + IDLE_WINDOW_S)]
    after = rss[rss.index > now_s() - SETTLE_S]
    return {
        "request": case.name,
        "texts": case.texts,
        "body_bytes": body_bytes,
        "expected_status": case.expected_status,
        "status": status,
        "as_expected": status == case.expected_status,
        "elapsed_s": round(answered_s - sent_s, 3),
        "worker_rss_before_mb": _mb(before.median()) if len(before) else None,
        "worker_rss_peak_mb": _mb(during.max()) if len(during) else None,
        "worker_rss_after_mb": _mb(after.median()) if len(after) else None,
        "worker_busy_after_answer_s": None if busy_s is None else round(busy_s, 2),
        "worker_pids_unchanged": pids() == pids_before,
        "answer": answer if status != 200 else "",
    }


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port or 80)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__file__, __doc__)
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME", dest="variants",
        help="variant served (repeatable; default: every variant of experiment.variants)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-interval", type=float, default=0.02, metavar="S",
        help="seconds between samples of the server processes' RSS and CPU time",
    )  # fmt: skip
    parser.add_argument(
        "--configfile", action="append", default=[], metavar="FILE",
        help="YAML merged over config/config.yaml (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="output folder (default: <results>/benchmarks/largest_request)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = load_config(*args.configfile)
    layout = Layout.of(config)
    variants = args.variants or list(config["experiment"]["variants"])
    records = {variant: local_variant(config, layout, variant) for variant in variants}
    generator = LoadgenSettings.of(config)
    out = args.out or layout.benchmarks_dir / "largest_request"
    clear_dir(out)

    rows: list[dict[str, Any]] = []
    for variant, (record, target) in records.items():
        log.info("%s (%s): serving it", variant, record["tag"])
        rows += measure_variant(
            variant, record, target, generator, out / variant, args.sample_interval
        )

    timeouts = {
        variant: float(record["settings"]["timeout_s"]) for variant, (record, _) in records.items()
    }
    problems = [
        f"{row['variant']} {row['request']}: {row['status']}, expected {row['expected_status']}"
        for row in rows
        if not row["as_expected"]
    ] + [
        f"{row['variant']} largest-accepted: {row['elapsed_s']} s, over timeout_s"
        for row in rows
        if row["request"] == "largest-accepted" and row["elapsed_s"] > timeouts[row["variant"]]
    ]
    _write_csv(out / "largest_request.csv", rows, FIELDS)
    write_json(
        out / "largest_request.json",
        {
            "rows": rows,
            "problems": problems,
            "passed": not problems,
            "sample_interval_s": args.sample_interval,
            "cpus": {
                variant: {"server": list(target.cpus), "loadgen": list(generator.cpus)}
                for variant, (_, target) in records.items()
            },
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "environment": environment(),
        },
    )
    for row in rows:
        print(
            f"{row['variant']:<22} {row['request']:<20} {row['status']} in {row['elapsed_s']:.3f} s"
            f"  worker RSS {row['worker_rss_before_mb']} -> {row['worker_rss_peak_mb']} MB"
            f" (after {row['worker_rss_after_mb']}), busy {row['worker_busy_after_answer_s']} s"
            " after the answer"
        )
    print(f"{out}: " + ("PASSED" if not problems else "FAILED: " + "; ".join(problems)))
    return 0 if not problems else 1
