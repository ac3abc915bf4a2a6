"""The `servebench` command: the one command-line entry of the project.

Each group of subcommands is a module of this package with an `add_subcommand(subparsers)`
function that sets `func` on its parser; the modules import the library lazily inside their
handlers, so that, e.g., `servebench loadtest` never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from servebench import __version__
from servebench.errors import UserError

# Exit statuses of every subcommand (`servebench --help` lists them).
EXIT_OK = 0  # done; a load test: a valid run whose SLO gates all passed
EXIT_INVALID = 1  # a load test broke a validity rule (reasons printed); a check failed
EXIT_USAGE = 2  # bad input: options, configuration, files (one line says what)
EXIT_SLO_FAILED = 3  # a valid load test failed an SLO gate (--slo)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: what was measured is kept
EXIT_STATUSES = (
    "Exit status: 0 done (a load test: valid, every --slo gate passed); 1 the run broke a "
    "validity rule (or a check failed); 2 bad input; 3 a valid run failed an --slo gate; "
    "130 interrupted"
)
# A header name is an HTTP token (RFC 9110).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# Every subcommand provider, in help order.
SUBCOMMAND_MODULES: list[str] = [
    "servebench.cli.config",
    "servebench.cli.loadtest",
    "servebench.cli.loadgen_worker",
    "servebench.cli.calibrate",
    "servebench.cli.serve",
    "servebench.cli.k3s",
    "servebench.cli.job",
    "servebench.cli.image",
    "servebench.cli.rerun",
    "servebench.cli.report",
    "servebench.cli.compare",
    "servebench.cli.bench",
]


def add_configfile_option(parser: argparse.ArgumentParser) -> None:
    """`--configfile FILE [FILE ...]` (repeatable): the one spelling of the configuration option."""
    parser.add_argument(
        "--configfile",
        action="extend",
        nargs="+",
        default=[],
        type=Path,
        metavar="FILE",
        help="YAML files merged over config/config.yaml in order (`--configfile A B` or "
        "repeated), as `snakemake --configfile`",
    )


def add_header_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`-H/--header 'Name: value'` (repeatable), as curl's."""
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="header sent with every request (repeatable), e.g. -H 'Authorization: Bearer "
        "TOKEN'; recorded by name only (summary.json), its value only in plan.json",
    )


def parse_headers(given: list[str]) -> dict[str, str]:
    """`Name: value` texts (curl's -H) -> {name: value}; UserError on one that is not one."""
    headers: dict[str, str] = {}
    for text in given:
        name, colon, value = text.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise UserError(
                f"-H/--header {text!r}: expected 'Name: value', e.g. 'Authorization: Bearer TOKEN'"
            )
        headers[name] = value.strip()
    return headers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servebench",
        description="Model-serving experiments: load tests, serving, comparisons.",
        epilog=EXIT_STATUSES,
    )
    parser.add_argument("--version", action="version", version=f"servebench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_subcommand(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"servebench {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"servebench {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
