"""`servebench loadtest`: one open-loop load test against any HTTP endpoint.

Imports nothing heavy at import time: the parser is built for every `servebench` command.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from servebench.cli import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SLO_FAILED,
    EXIT_STATUSES,
    add_configfile_option,
    add_header_option,
    parse_headers,
)
from servebench.errors import UserError
from servebench.records import RunSummary
from servebench.settings import LoadgenSettings
from servebench.slo import GATE_METRICS, GateError, gates_report, parse_gates

VALIDITY_OPTIONS = (
    # (option, config key under loadgen.validity, type, metavar, help)
    (
        "--rate-tolerance",
        "achieved_rate_tolerance",
        float,
        "FRACTION",
        "largest relative gap between achieved and offered rate",
    ),
    (
        "--cv-tolerance",
        "cv_tolerance",
        float,
        "FRACTION",
        "largest relative gap between realized and scheduled interarrival CV",
    ),
    (
        "--cv-min-arrivals",
        "cv_min_arrivals",
        int,
        "N",
        "the CV rule applies from this many measured arrivals",
    ),
    (
        "--ks-alpha",
        "ks_alpha",
        float,
        "ALPHA",
        "significance level of the KS test of the realized against the drawn interarrivals",
    ),
    (
        "--ks-resolution-ms",
        "ks_resolution_ms",
        float,
        "MS",
        "interarrivals below this are censored in the KS test",
    ),
    ("--max-send-lag-ms", "send_lag_p99_max_ms", float, "MS", "largest send-lag p99"),
    (
        "--max-cpu-percent",
        "generator_cpu_max_percent",
        float,
        "PERCENT",
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
            "Writes requests.parquet, summary.json and Locust's reports into --out. "
            "SLO gates (--slo, any number) are judged on the run's summary; goodput, the ok "
            "answers per second that met every latency gate, goes into summary.json "
            "(docs/loadgen.md). Defaults of the generator's settings come from the "
            "configuration (config/config.yaml `loadgen`, `cpus.loadgen`, `seed`). "
            + EXIT_STATUSES
            + " (an invalid run exits 1 whatever its gates: a broken measurement judges nothing)."
        ),
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--host", required=True, metavar="URL", help="base URL, e.g. http://127.0.0.1:3000"
    )
    target.add_argument(
        "--endpoint",
        metavar="PATH",
        help="path that receives the load (default: config loadgen.endpoint)",
    )
    target.add_argument("--method", default="POST", help="HTTP method (default POST)")
    add_header_option(target)
    target.add_argument(
        "--payloads",
        type=Path,
        metavar="CSV",
        help="CSV file with a `text` column (e.g. data/texts.csv)",
    )
    target.add_argument(
        "--body-template",
        default=None,
        metavar="JSON",
        help='JSON body with "{text}" where the text goes (default: {"texts": ["{text}"]}, '
        "the /classify_batch body)",
    )
    target.add_argument(
        "--rejected-statuses",
        default="429,503",
        metavar="CODES",
        help="statuses counted as load shedding (outcome rejected) (default 429,503)",
    )

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument(
        "--arrival",
        default="exponential",
        choices=("exponential", "gamma", "constant", "trace"),
        help="interarrival law (default exponential: Poisson arrivals)",
    )
    schedule.add_argument(
        "--rate", type=float, metavar="REQ_PER_S", help="mean rate in requests per second"
    )
    law = schedule.add_mutually_exclusive_group()
    law.add_argument(
        "--cv", type=float, metavar="CV", help="gamma: coefficient of variation of interarrivals"
    )
    law.add_argument("--shape", type=float, metavar="K", help="gamma: shape k (CV = 1/sqrt(k))")
    length = schedule.add_mutually_exclusive_group()
    length.add_argument(
        "--duration", type=float, metavar="SECONDS", help="length of the schedule in seconds"
    )
    length.add_argument("--requests", type=int, metavar="N", help="number of requests to send")
    schedule.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds at the start left out of statistics (default 0)",
    )
    schedule.add_argument(
        "--seed",
        type=int,
        metavar="INT",
        help="seed of schedule and payload order (default: config seed)",
    )
    schedule.add_argument(
        "--stages",
        metavar="SPEC",
        help="piecewise rate instead of --rate: DURATION_S:RATE or DURATION_S:START-END ramps, "
        "comma-separated, e.g. 10:5,20:5-50,10:50",
    )
    schedule.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="with --arrival trace: file of timestamps in seconds to replay "
        "(with --rate: time-scaled to that mean rate)",
    )

    gates = parser.add_argument_group("SLO gates")
    gates.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="'METRIC<=NUMBER'",
        help="a gate on the run's summary (repeatable), METRIC<=NUMBER or METRIC>=NUMBER, e.g. "
        "'p99_ms<=200' 'error_rate<=0.01'; exit status 3 when one fails. Metrics: "
        + ", ".join(GATE_METRICS),
    )

    generator = parser.add_argument_group("generator (defaults from the configuration)")
    generator.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    generator.add_argument(
        "--loadgen-workers", type=int, metavar="N", help="Locust worker processes"
    )
    generator.add_argument(
        "--cpus", metavar="CPUS", help="cores of the generator, e.g. 1 or 1,2 or 2-3"
    )
    generator.add_argument(
        "--max-in-flight", type=int, metavar="N", help="most requests in flight at once"
    )
    generator.add_argument(
        "--overflow", choices=("delay", "drop"), help="a request over the in-flight cap"
    )
    generator.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="request timeout in seconds"
    )
    add_configfile_option(generator)
    generator.add_argument(
        "--no-progress", action="store_true", help="no progress display on stderr"
    )
    generator.add_argument(
        "--progress-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between progress lines (default 0.5 on a terminal, 5 otherwise)",
    )

    distributed = parser.add_argument_group(
        "load from several machines (docs/loadgen.md, 'Distributed generation')"
    )
    distributed.add_argument(
        "--workers-expected",
        type=int,
        metavar="N",
        help="run only Locust's master here and wait for N workers started elsewhere with "
        "`servebench loadgen-worker --master HOST:PORT` (with --master-bind)",
    )
    distributed.add_argument(
        "--master-bind",
        metavar="HOST:PORT",
        help="where the master listens for those workers, e.g. 0.0.0.0:5557",
    )
    validity = parser.add_argument_group("validity rules (defaults: config loadgen.validity)")
    for option, _key, kind, metavar, text in VALIDITY_OPTIONS:
        validity.add_argument(option, type=kind, metavar=metavar, help=text)
    parser.set_defaults(func=run)


def generator_settings(args: argparse.Namespace, config: dict | None = None) -> LoadgenSettings:
    """The configuration's `loadgen` and `cpus.loadgen`, with the options given over them."""
    from servebench.config import load_config
    from servebench.cpus import parse_cpus

    config = load_config(*args.configfile, server_here=False) if config is None else config
    defaults = LoadgenSettings.of(config)
    validity = dict(defaults.validity)
    for option, key, _kind, _metavar, _text in VALIDITY_OPTIONS:
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
    from servebench.config import load_config
    from servebench.loadgen.runner import DEFAULT_BODY_TEMPLATE, LoadTestError, run_loadtest

    try:
        gates = parse_gates(args.slo)
    except GateError as error:
        raise UserError(str(error)) from None
    headers = parse_headers(args.headers)
    # Only the generator runs here: the server's cores need not exist on this machine.
    config = load_config(*args.configfile, server_here=False)
    generator = generator_settings(args, config)
    seed = config["seed"] if args.seed is None else args.seed
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
    generator, master_bind = distributed_settings(args, generator)
    try:
        summary = run_loadtest(
            host=args.host,
            out_dir=args.out,
            seed=seed,
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
            master_bind=master_bind,
            headers=headers,
            gates=gates,
        )
    except LoadTestError as error:
        raise UserError(str(error)) from None
    print(report(summary, args.out))
    if not summary.valid:
        return EXIT_INVALID
    if not all(verdict["passed"] for verdict in summary.slo_gates):
        return EXIT_SLO_FAILED
    return EXIT_OK


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
            f"interarrival CV: target {_g(summary.target_cv)}, schedule "
            f"{_g(summary.schedule_cv)}, realized {_g(summary.realized_cv)}; KS p="
            f"{_g(summary.ks_pvalue)}",
            f"send lag: p50 {_ms(summary.send_lag_p50_ms)}, p99 {_ms(summary.send_lag_p99_ms)}"
            f"; generator CPU {'-' if cpu is None else f'{cpu:.0f}%'}",
            f"latency (from schedule): p50 {_ms(summary.latency_p50_ms)}, p99 "
            f"{_ms(summary.latency_p99_ms)}; service (from send): p50 "
            f"{_ms(summary.service_p50_ms)}, p99 {_ms(summary.service_p99_ms)}",
            f"requests (after warm-up): {counts or 'none'}",
            *(
                [
                    f"goodput (ok within {summary.goodput_latency_ms:g} ms): "
                    f"{summary.goodput_rps:.4g} req/s"
                ]
                if summary.goodput_rps is not None
                else []
            ),
            *(["SLO gates:", gates_report(summary.slo_gates)] if summary.slo_gates else []),
            f"wrote {out / 'summary.json'} and {out / 'requests.parquet'}",
        ]
    )


def _g(value: float | None) -> str:
    """A summary figure in 3 significant digits, '-' when there is none."""
    return "-" if value is None else f"{value:.3g}"


def host_port(text: str, option: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port); UserError naming `option` otherwise."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{option} {text!r}: expected HOST:PORT, e.g. 0.0.0.0:5557")
    return host, int(port)


def distributed_settings(
    args: argparse.Namespace, generator: LoadgenSettings
) -> tuple[LoadgenSettings, tuple[str, int] | None]:
    """--workers-expected N --master-bind HOST:PORT: N remote workers share the schedule."""
    if (args.workers_expected is None) != (args.master_bind is None):
        raise UserError("--workers-expected and --master-bind go together")
    if args.master_bind is None:
        return generator, None
    if args.workers_expected < 1:
        raise UserError(f"--workers-expected {args.workers_expected}: at least 1")
    if args.loadgen_workers is not None:
        raise UserError("--loadgen-workers starts local workers: not with --workers-expected")
    bind = host_port(args.master_bind, "--master-bind")
    print(
        f"servebench loadtest: waiting for {args.workers_expected} worker(s): run "
        f"`servebench loadgen-worker --master {bind[0]}:{bind[1]}` on each worker machine "
        "(with a host this machine is reachable at)",
        file=sys.stderr,
        flush=True,
    )
    return dataclasses.replace(generator, workers=args.workers_expected), bind
