"""`servebench loadgen-worker --master HOST:PORT`: one Locust worker of a load test whose master
runs on another machine (`servebench loadtest --workers-expected N --master-bind HOST:PORT`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from servebench.errors import UserError


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadgen-worker",
        help="one load generator worker for a `servebench loadtest --master-bind` elsewhere",
        description=(
            "Connect one Locust worker to the master of `servebench loadtest --workers-expected "
            "N --master-bind HOST:PORT` and send its share of the schedule (request i when i mod "
            "N is its index) until the master ends the test. The master sends the plan over "
            "Locust's message channel and the worker sends its request log back the same way: "
            "no file is shared. Start one per worker machine, for each run. The machines' "
            "clocks must agree to well under a millisecond (NTP, PTP). Exit status: Locust's "
            "(0 when the master ended the test), 2 bad input."
        ),
    )
    parser.add_argument(
        "--master", required=True, metavar="HOST:PORT", help="where the master listens"
    )
    parser.add_argument(
        "--cpus", metavar="CPUS", help="cores of this worker, e.g. 1 or 2-3 (default: not pinned)"
    )
    parser.add_argument(
        "--folder",
        type=Path,
        metavar="DIR",
        help="the worker's own folder (its Locust log, a copy of its request log); default: a "
        "temporary folder, removed at the end",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from servebench.cli.loadtest import host_port
    from servebench.loadgen.runner import LoadTestError, parse_cpus, run_worker

    host, port = host_port(args.master, "--master")
    try:
        return run_worker(host, port, parse_cpus(args.cpus), args.folder)
    except LoadTestError as error:
        raise UserError(str(error)) from None
