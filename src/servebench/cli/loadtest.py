"""`servebench loadtest`: one open-loop load test against any HTTP endpoint.

Imports nothing heavy at import time: the parser is built for every `servebench` command.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError
from servebench.records import RunSummary
from servebench.settings import LoadgenSettings

VALIDITY_OPTIONS = (
    # (option, config key under loadgen.validity, type, help)
    (
        "--rate-tolerance",
        "achieved_rate_tolerance",
        float,
        "largest relative gap between achieved and offered rate",
    ),
    (
        "--cv-tolerance",
        "cv_tolerance",
        float,
        "largest relative gap between realized and scheduled interarrival CV",
    ),
    (
        "--cv-min-arrivals",
        "cv_min_arrivals",
        int,
        "the CV rule applies from this many measured arrivals",
    ),
    ("--ks-alpha", "ks_alpha", float, "significance level of the KS test against the target law"),
    (
        "--ks-resolution-ms",
        "ks_resolution_ms",
        float,
        "interarrivals below this are censored in the KS test",
    ),
    ("--max-send-lag-ms", "send_lag_p99_max_ms", float, "largest send-lag p99"),
    (
        "--max-cpu-percent",
        "generator_cpu_max_percent",
        float,
        "largest generator CPU, percent of a core",
    ),
)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help="open-loop load test of an HTTP endpoint (seeded schedule, Locust subprocess)",
        description=(
            "Send a seeded schedule of requests to HOST+ENDPOINT open loop: each request at its "
            "scheduled time whatever the server does; latency counts from the scheduled time. "
            "Writes requests.parquet, summary.json and Locust's reports into --out. Exit "
            "status 0: valid run, 1: the run broke a validity rule (reasons printed), 2: bad "
            "input. Defaults of the generator's settings come from the configuration "
            "(config/config.yaml `loadgen` and `cpus.loadgen`)."
        ),
    )
    target = parser.add_argument_group("target")
    target.add_argument("--host", required=True, help="base URL, e.g. http://127.0.0.1:3000")
    target.add_argument("--endpoint", help="path that receives the load (config: loadgen.endpoint)")
    target.add_argument("--method", default="POST", help="HTTP method (default POST)")
    target.add_argument(
        "--payloads", type=Path, help="CSV file with a `text` column (e.g. data/texts.csv)"
    )
    target.add_argument(
        "--body-template",
        default=None,
        help='JSON body with "{text}" where the text goes (default: {"texts": ["{text}"]}, '
        "the /classify_batch body)",
    )
    target.add_argument(
        "--rejected-statuses",
        default="429,503",
        help="statuses counted as load shedding (outcome rejected) (default 429,503)",
    )

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument(
        "--arrival", required=True, choices=("exponential", "gamma", "constant", "trace")
    )
    schedule.add_argument("--rate", type=float, help="mean rate in requests/s")
    law = schedule.add_mutually_exclusive_group()
    law.add_argument("--cv", type=float, help="gamma: coefficient of variation of interarrivals")
    law.add_argument("--shape", type=float, help="gamma: shape k (CV = 1/sqrt(k))")
    length = schedule.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="length of the schedule in seconds")
    length.add_argument("--requests", type=int, help="number of requests to send")
    schedule.add_argument(
        "--warmup", type=float, default=0.0, help="seconds at the start left out of statistics"
    )
    schedule.add_argument("--seed", type=int, required=True, help="seed of schedule and payloads")
    schedule.add_argument(
        "--stages",
        help="piecewise rate instead of --rate: DURATION_S:RATE or DURATION_S:START-END ramps, "
        "comma-separated, e.g. 10:5,20:5-50,10:50",
    )
    schedule.add_argument(
        "--trace",
        type=Path,
        help="with --arrival trace: file of timestamps in seconds to replay "
        "(with --rate: time-scaled to that mean rate)",
    )

    generator = parser.add_argument_group("generator (defaults from the configuration)")
    generator.add_argument("--out", type=Path, required=True, help="output folder")
    generator.add_argument("--loadgen-workers", type=int, help="Locust worker processes")
    generator.add_argument("--cpus", help="cores of the generator, e.g. 1 or 1,2 or 2-3")
    generator.add_argument("--max-in-flight", type=int, help="most requests in flight at once")
    generator.add_argument(
        "--overflow", choices=("delay", "drop"), help="a request over the in-flight cap"
    )
    generator.add_argument("--timeout", type=float, help="request timeout in seconds")
    add_configfile_option(generator)
    generator.add_argument(
        "--no-progress", action="store_true", help="no progress display on stderr"
    )
    generator.add_argument(
        "--progress-interval",
        type=float,
        help="seconds between progress lines (default 0.5 on a terminal, 5 otherwise)",
    )

    validity = parser.add_argument_group("validity rules (defaults: config loadgen.validity)")
    for option, _key, kind, text in VALIDITY_OPTIONS:
        validity.add_argument(option, type=kind, help=text)
    parser.set_defaults(func=run)


def generator_settings(args: argparse.Namespace) -> LoadgenSettings:
    """The configuration's `loadgen` and `cpus.loadgen`, with the options given over them."""
    from servebench.config import load_config
    from servebench.cpus import parse_cpus

    config = load_config(*args.configfile)
    defaults = LoadgenSettings.of(config)
    validity = dict(defaults.validity)
    for option, key, _kind, _text in VALIDITY_OPTIONS:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None:
            validity[key] = value
    cpus = defaults.cpus
    if args.cpus is not None:
        try:
            cpus = tuple(parse_cpus(args.cpus))
        except ValueError as error:
            raise UserError(f"--cpus: {error}") from None
    given = {
        "endpoint": args.endpoint,
        "workers": args.loadgen_workers,
        "max_in_flight": args.max_in_flight,
        "overflow": args.overflow,
        "timeout_s": args.timeout,
    }
    return dataclasses.replace(
        defaults,
        validity=validity,
        cpus=cpus,
        **{key: value for key, value in given.items() if value is not None},
    )


def run(args: argparse.Namespace) -> int:
    from servebench.loadgen.runner import DEFAULT_BODY_TEMPLATE, LoadTestError, run_loadtest

    generator = generator_settings(args)
    if args.arrival == "trace" and args.trace is None:
        raise UserError("--arrival trace needs --trace FILE")
    if args.trace is not None and args.arrival != "trace":
        raise UserError("--trace is for --arrival trace")
    if args.rate is None and args.stages is None and args.arrival != "trace":
        raise UserError("give --rate (or --stages)")
    if args.duration is None and args.requests is None and args.stages is None:
        if args.arrival != "trace":
            raise UserError("give --duration SECONDS or --requests N")
    try:
        rejected = tuple(int(code) for code in args.rejected_statuses.split(",") if code.strip())
    except ValueError:
        raise UserError(
            f"--rejected-statuses {args.rejected_statuses!r}: expected e.g. 429,503"
        ) from None
    try:
        summary = run_loadtest(
            host=args.host,
            out_dir=args.out,
            seed=args.seed,
            arrival=args.arrival,
            rate_rps=args.rate,
            cv=args.cv,
            shape=args.shape,
            duration_s=args.duration,
            requests=args.requests,
            warmup_s=args.warmup,
            stages=args.stages,
            trace=args.trace,
            payloads=args.payloads,
            generator=generator,
            method=args.method,
            body_template=args.body_template or DEFAULT_BODY_TEMPLATE,
            rejected_statuses=rejected,
            progress=not args.no_progress,
            progress_interval_s=args.progress_interval,
        )
    except LoadTestError as error:
        raise UserError(str(error)) from None
    print(report(summary, args.out))
    return 0 if summary.valid else 1


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def report(summary: RunSummary, out: Path) -> str:
    """A few lines for people: validity first, then the headline numbers."""
    counts = ", ".join(f"{name} {count}" for name, count in summary.counts.items() if count)
    verdict = (
        "VALID" if summary.valid else "INVALID:\n  - " + "\n  - ".join(summary.invalid_reasons)
    )
    cpu = summary.generator_cpu_percent
    return "\n".join(
        [
            verdict,
            f"rate: offered {summary.offered_rate_rps:.4g} req/s, achieved "
            f"{summary.achieved_rate_rps:.4g} req/s, throughput (ok) "
            f"{summary.throughput_rps:.4g} req/s",
            f"interarrival CV: target {summary.target_cv}, schedule {summary.schedule_cv}, "
            f"realized {summary.realized_cv}; KS p={summary.ks_pvalue}",
            f"send lag: p50 {_ms(summary.send_lag_p50_ms)}, p99 {_ms(summary.send_lag_p99_ms)}"
            f"; generator CPU {'-' if cpu is None else f'{cpu:.0f}%'}",
            f"latency (from schedule): p50 {_ms(summary.latency_p50_ms)}, p99 "
            f"{_ms(summary.latency_p99_ms)}; service (from send): p50 "
            f"{_ms(summary.service_p50_ms)}, p99 {_ms(summary.service_p99_ms)}",
            f"requests (after warm-up): {counts or 'none'}",
            f"wrote {out / 'summary.json'} and {out / 'requests.parquet'}",
        ]
    )
