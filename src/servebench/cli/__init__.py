"""The `servebench` command: the one command-line entry of the project.

Each group of subcommands is a module of this package with an `add_subcommand(subparsers)`
function that sets `func` on its parser; the modules import the library lazily inside their
handlers, so that, e.g., `servebench loadtest` never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from servebench.errors import UserError

# Every subcommand provider, in help order.
SUBCOMMAND_MODULES: list[str] = [
    "servebench.cli.config",
    "servebench.cli.loadtest",
    "servebench.cli.calibrate",
    "servebench.cli.serve",
    "servebench.cli.k3s",
    "servebench.cli.job",
    "servebench.cli.report",
    "servebench.cli.compare",
    "servebench.cli.bench",
]


def add_configfile_option(parser: argparse.ArgumentParser) -> None:
    """`--configfile FILE` (repeatable): the one spelling of the configuration option."""
    parser.add_argument(
        "--configfile",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="YAML merged over config/config.yaml (repeatable), as `snakemake --configfile`",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servebench",
        description="Model-serving experiments: load tests, serving, comparisons.",
    )
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
        return 2
    except KeyboardInterrupt:
        print(f"servebench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
