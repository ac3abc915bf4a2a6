"""Command-line glue shared by the workflow scripts when they run outside Snakemake.

Each script in workflow/scripts/ takes its inputs from the `snakemake` object inside the
workflow, and from these parsers when a user runs it by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from servebench.config import load_config


def parse_run_args(description: str, kind: str) -> tuple[dict[str, Any], argparse.Namespace]:
    """Arguments of one load-test or resilience run: VARIANT KIND REPETITION BENTO_RECORD
    PAYLOADS OUT_DIR [--capacity] [--configfile ...]; returns the merged config and them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variant")
    parser.add_argument(kind)
    parser.add_argument("repetition", type=int)
    parser.add_argument("bento_record")
    parser.add_argument("payloads")
    parser.add_argument("out_dir")
    parser.add_argument("--capacity", help="capacity.json of the reference variant")
    parser.add_argument("--configfile", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return load_config(*args.configfile), args


def snakemake_run_inputs(sm: Any) -> tuple[str, str, Path, str | None]:
    """Inside Snakemake, a load-test or resilience job's (bento record, payloads, run folder,
    reference capacity or None); logs go to the job's log file."""
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    return sm.input.bento, sm.input.payloads, Path(sm.output.meta).parent, sm.input.capacity or None


def parse_rendering_args(
    description: str, output: str, output_help: str
) -> tuple[dict[str, Any], argparse.Namespace, list[str]]:
    """Arguments of the figure and report scripts: MODEL_DIR [OUTPUT] [--configfile ...];
    returns the merged config, them, and the runtimes to show (the baseline's first)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model_dir")
    parser.add_argument(output, nargs="?", help=output_help)
    parser.add_argument("--configfile", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(*args.configfile)
    runtimes = ["pytorch"] + [r for r in config["model"]["runtimes"] if r != "pytorch"]
    return config, args, runtimes
