"""`servebench rerun`: run again every load test of one scenario and/or one variant, by name.

    servebench rerun --scenario bursty                 # every variant and repetition of it
    servebench rerun --variant optimized               # every scenario and repetition of it
    servebench rerun --scenario bursty --variant optimized --dry-run

It runs `snakemake all --forcerun <meta.json of each chosen run>` from the repository root:
those runs are measured again and everything downstream (tables, figures, report) follows;
everything else is reused. Options after `--` go to Snakemake as they are.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError


def rerun_command(args: argparse.Namespace) -> list[str]:
    """The Snakemake command line that reruns the chosen runs."""
    from servebench.config import load_config
    from servebench.layout import META, Layout
    from servebench.matrix import run_matrix

    if args.scenario is None and args.variant is None:
        raise UserError("give --scenario NAME, --variant NAME or both")
    config = load_config(*args.configfile)
    experiment = config["experiment"]
    for kind, name, known in (
        ("scenario", args.scenario, experiment["scenarios"]),
        ("variant", args.variant, experiment["variants"]),
    ):
        if name is not None and name not in known:
            raise UserError(
                f"no {kind} named {name!r} in the experiment (experiment.{kind}s: "
                f"{', '.join(known)})"
            )
    layout = Layout.of(config)
    chosen = [
        str(spec.path(layout.results_dir) / META)
        for spec in run_matrix(config)
        if args.scenario in (None, spec.scenario) and args.variant in (None, spec.variant)
    ]
    command = [sys.executable, "-m", "snakemake", "all"]
    if args.configfile:
        command += ["--configfile", *map(str, args.configfile)]
    if args.cores is not None:
        command += ["--cores", str(args.cores)]
    if args.dry_run:
        command.append("--dry-run")
    extra = [option for option in args.snakemake_args if option != "--"]
    # --forcerun takes every word after it: last.
    return [*command, *extra, "--forcerun", *chosen]


def _run(args: argparse.Namespace) -> int:
    if not Path("Snakefile").is_file():
        raise UserError("run it from the repository root (where the Snakefile is)")
    command = rerun_command(args)
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command).returncode


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rerun",
        help="run again every load test of one scenario and/or variant (snakemake --forcerun)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", metavar="NAME", help="every run of this scenario")
    parser.add_argument("--variant", metavar="NAME", help="every run of this variant")
    add_configfile_option(parser)
    parser.add_argument(
        "--cores", type=int, metavar="N", help="Snakemake's --cores (default: the profile's)"
    )
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="show what would run, run nothing"
    )
    parser.add_argument(
        "snakemake_args",
        nargs=argparse.REMAINDER,
        metavar="-- SNAKEMAKE_OPTION",
        help="options passed to Snakemake as they are, after --",
    )
    parser.set_defaults(func=_run)
