"""`servebench check-config` and `servebench config-reference`."""

from __future__ import annotations

import argparse
from pathlib import Path

from servebench.config import DEFAULT_CONFIG_PATH, load_config, reference_markdown
from servebench.errors import ConfigError, UserError


def _run_check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            if Path(path).resolve() == DEFAULT_CONFIG_PATH:
                load_config()
            else:
                load_config(path)
            print(f"{path}: valid")
        except ConfigError as error:
            failed = True
            print(f"{path}: {error}")
    if failed:
        raise UserError("some configuration files are invalid")
    return 0


def _run_reference(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate configuration files (each merged over config/config.yaml, as "
        "`snakemake --configfile FILE` does): the schema and every rule across keys",
        description="Validate configuration files: each is merged over config/config.yaml, as "
        "`snakemake --configfile FILE` does, and checked against config/schema.yaml and every "
        "rule across keys (the same checks the workflow runs at start).",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="YAML configuration files"
    )
    parser.set_defaults(func=_run_check)
    reference = subparsers.add_parser(
        "config-reference",
        help="print the configuration reference (markdown) from the schema",
        description="Print docs/configuration.md, generated from config/schema.yaml.",
    )
    reference.set_defaults(func=_run_reference)
