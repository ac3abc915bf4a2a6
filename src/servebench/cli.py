"""The `servebench` command.

Each subcommand lives in the module that owns its logic and registers itself here with an
`add_subcommand(subparsers)` function that sets `func` on its parser. Modules are imported
lazily by name so that, e.g., `servebench loadtest` never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, description) of every subcommand provider, in help order.
SUBCOMMAND_MODULES: list[str] = [
    "servebench.config",
    "servebench.loadgen.cli",
    "servebench.deploy.local",
    "servebench.deploy.k3s",
]


class UserError(Exception):
    """An error caused by the user's input: printed as one line, without a traceback."""


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
