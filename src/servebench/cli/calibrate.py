"""`servebench calibrate`: saturation throughput and capacity at a p99 SLO of any HTTP endpoint,
with the same search as the study's calibration (servebench.jobs.calibrate)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from servebench.cli import add_configfile_option, add_header_option, parse_headers
from servebench.errors import UserError


def _run(args: argparse.Namespace) -> int:
    from servebench.config import load_config
    from servebench.cpus import parse_cpus
    from servebench.jobs.calibrate import search_capacity, write_calibration
    from servebench.loadgen.runner import DEFAULT_BODY_TEMPLATE, LoadTestError
    from servebench.payloads import PayloadError
    from servebench.settings import CalibrationSettings, LoadgenSettings

    headers = parse_headers(args.headers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # Only the generator runs here: the server's cores need not exist on this machine.
    config = load_config(*args.configfile, server_here=False)
    calibration = CalibrationSettings.of(config)
    if args.slo_p99_ms is not None:
        calibration = dataclasses.replace(calibration, slo_p99_ms=args.slo_p99_ms)
    generator = LoadgenSettings.of(config)
    if args.cpus is not None:
        try:
            generator = dataclasses.replace(generator, cpus=tuple(parse_cpus(args.cpus)))
        except ValueError as error:
            raise UserError(f"--cpus: {error}") from None
    if args.endpoint is not None:
        generator = dataclasses.replace(generator, endpoint=args.endpoint)
    if not args.host.startswith(("http://", "https://")):
        raise UserError(f"--host must be a URL like http://127.0.0.1:3000, not {args.host!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = search_capacity(
            args.host,
            args.payloads,
            calibration,
            generator,
            args.out,
            seed=config["seed"] if args.seed is None else args.seed,
            measured_cpus=generator.cpus,
            body_template=args.body_template or DEFAULT_BODY_TEMPLATE,
            foreign_cpu_max_percent=config["measurement"]["foreign_cpu_max_percent"],
            headers=headers,
        )
    except (LoadTestError, PayloadError, RuntimeError) as error:
        raise UserError(str(error)) from None
    answers = write_calibration(
        result, calibration, args.out, {"url": args.host + generator.endpoint}
    )
    print(report(answers, args.out))
    return 0


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g} req/s"


def report(answers: dict, out: Path) -> str:
    sat_lo, sat_hi = answers["saturation_bracket_rps"]
    slo = answers["slo_p99_ms"]
    if answers["capacity_unattainable"]:
        capacity = answers["capacity_unattainable"]
    else:
        lo, hi = answers["capacity_bracket_rps"]
        capacity = (
            f"{_rate(answers['capacity_rps'])} answered (offered {_rate(answers['capacity_offered_rps'])}; bracket "
            f"{_rate(lo)} - {_rate(hi)}; {'confirmed' if answers['capacity_confirmed'] else 'NOT confirmed'})"
        )
    return "\n".join(
        [
            f"unloaded: p50 {answers['unloaded_p50_ms']:.1f} ms, p99 {answers['unloaded_p99_ms']:.1f} "
            f"ms ({answers['unloaded_requests']} requests one at a time)",
            f"saturation throughput: {_rate(answers['saturation_rps'])} answered (offered "
            f"{_rate(answers['saturation_offered_rps'])}"
            f"{', under overload' if answers.get('saturation_from') == 'overload' else ''}; "
            f"kept up within {_rate(sat_lo)} - {_rate(sat_hi)} offered)",
            f"capacity at p99 <= {slo:g} ms: {capacity}",
            f"{answers['steps_run']} steps in {answers['search_s']:.0f} s; wrote {out / 'capacity.json'} "
            f"and {out / 'steps.csv'}",
            *[f"note: {note}" for note in answers["notes"]],
        ]
    )


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="saturation throughput and capacity at a p99 SLO of an HTTP endpoint",
        description="Search an endpoint's saturation throughput (the highest rate it keeps up "
        "with) and its capacity at a p99 SLO (the highest rate that keeps up and meets it, every "
        "lower one too, confirmed by a repeat), starting from its unloaded service time: the "
        "study's calibration, against any server. Writes capacity.json and steps.csv into --out. "
        "Settings not given come from the configuration (`calibration`, `loadgen`, "
        "`cpus.loadgen`, `seed`; --configfile FILE merged over config/config.yaml). Exit status: "
        "0 done (an unattainable SLO is an answer, printed), 2 bad input or no answer from the "
        "endpoint, 130 interrupted.",
    )
    parser.add_argument(
        "--host", required=True, metavar="URL", help="base URL, e.g. http://127.0.0.1:3000"
    )
    parser.add_argument(
        "--endpoint",
        metavar="PATH",
        help="path that receives the load (default: config loadgen.endpoint)",
    )
    add_header_option(parser)
    parser.add_argument(
        "--payloads", type=Path, required=True, metavar="CSV", help="CSV file with a `text` column"
    )
    parser.add_argument(
        "--body-template",
        metavar="JSON",
        help='JSON body with "{text}" where the text goes (default: {"texts": ["{text}"]})',
    )
    parser.add_argument(
        "--slo-p99-ms",
        type=float,
        metavar="MS",
        help="p99 objective in milliseconds (default: config calibration.slo_p99_ms)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--seed",
        type=int,
        metavar="INT",
        help="seed of the steps' schedules (default: config seed)",
    )
    parser.add_argument(
        "--cpus",
        metavar="CPUS",
        help="cores of the load generator, e.g. 1 or 2-3 (default: config cpus.loadgen)",
    )
    add_configfile_option(parser)
    parser.set_defaults(func=_run)
