"""`servebench report render` and `servebench report check`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError


def _render(args: argparse.Namespace) -> int:
    from servebench.config import load_config
    from servebench.layout import Layout
    from servebench.model.resolve import resolve_model
    from servebench.report.html import render_from_results
    from servebench.settings import model_runtimes

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    config = load_config(*args.configfile)
    layout = Layout.of(config)
    path = render_from_results(config, resolve_model(config["model"]).name, model_runtimes(config))
    print(f"wrote {layout.tables_dir}, {layout.figures_dir}, {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from servebench.report.browser import browser_check

    try:
        result = browser_check(args.html)
    except RuntimeError as error:
        raise UserError(str(error)) from None
    problems = list(result["errors"]) + list(result["console"])
    if result["loaded"] != result["images"]:
        problems.append(f"only {result['loaded']} of {result['images']} images loaded")
    print(f"{args.html}: {result['loaded']} of {result['images']} images loaded")
    for problem in problems:
        print(f"  problem: {problem}")
    return 1 if problems else 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render the study's tables, figures and report.html from disk, or check a report",
        description="`render`: tables, figures and report.html from the results on disk, "
        "without Snakemake (nothing upstream reruns). `check`: open a report in headless "
        "Chromium; exit status 1 when an image did not load or the page logged an error.",
    )
    commands = parser.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    render = commands.add_parser(
        "render",
        help="tables, figures and report.html from disk",
        description="Write the study's tables, figures and report.html from the results on "
        "disk, without Snakemake: nothing upstream runs.",
    )
    add_configfile_option(render)
    render.set_defaults(func=_render)
    check = commands.add_parser(
        "check",
        help="open a report in headless Chromium",
        description="Open a report in headless Chromium; exit status 1 when an image did not "
        "load or the page logged an error.",
    )
    check.add_argument("html", type=Path, metavar="HTML", help="the report.html to check")
    check.set_defaults(func=_check)
