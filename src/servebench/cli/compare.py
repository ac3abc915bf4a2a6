"""`servebench compare DIR_A DIR_B`: two studies' results folders compared (before and after a
change, two machines, two model versions) with the study's own statistics
(servebench.analysis.compare), as tables, a figure and an HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two studies' results folders (B against A) with the study's statistics",
        description=(
            "Compare the runs of two results folders, B against A (the reference), for every "
            "variant and scenario both ran: the paired t-test on log ratios where the runs' "
            "schedules match (same seed in meta.json), Welch's unpaired test otherwise (the "
            "test is named in each row), Holm within each metric's family. Writes "
            "comparison.csv, summary.csv, runs.csv, unmatched.csv, comparison.{png,pdf} and "
            "comparison.html into --out. Exit status 0: compared (whatever the verdicts), "
            "2: bad input. Confidence level and alpha come from the configuration "
            "(analysis.ci_level, analysis.alpha)."
        ),
    )
    parser.add_argument("dir_a", type=Path, metavar="DIR_A", help="results folder of A (reference)")
    parser.add_argument("dir_b", type=Path, metavar="DIR_B", help="results folder of B")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("comparison"),
        metavar="DIR",
        help="output folder (default: ./comparison)",
    )
    parser.add_argument(
        "--names",
        nargs=2,
        metavar=("NAME_A", "NAME_B"),
        help="names of the two studies in the tables (default: the folders' names)",
    )
    add_configfile_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from servebench.analysis.compare import (
        CompareError,
        compare_studies,
        read_study,
        study_labels,
        write_comparison,
    )
    from servebench.config import load_config
    from servebench.report.compare import render_comparison
    from servebench.settings import AnalysisSettings

    settings = AnalysisSettings.of(load_config(*args.configfile))
    try:
        label_a, label_b = study_labels(args.dir_a, args.dir_b, args.names)
        a = read_study(args.dir_a, label_a)
        b = read_study(args.dir_b, label_b)
        result = compare_studies(a, b, settings)
    except CompareError as error:
        raise UserError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    paths = write_comparison(result, args.out)
    page = render_comparison(result, args.out)
    headline = result.comparison[
        result.comparison["metric"].isin(("latency_p50_ms", "latency_p99_ms", "throughput_rps"))
    ]
    for _, row in headline.iterrows():
        print(f"{row['variant_group']}, {row['scenario']}: {row['verdict']}")
    print(f"wrote {paths['comparison']} and {page}")
    return 0
