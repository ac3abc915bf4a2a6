"""Benchmarks: measurements that write numbers to files under results/benchmarks/ and docs,
never timed assertions. Each is `servebench bench NAME [OPTIONS]` and holds the machine for
minutes: run nothing beside it."""

from __future__ import annotations

import argparse
from pathlib import Path


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, [], argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def bench_parser(module_file: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `servebench bench NAME` for the benchmark module `module_file`: its name
    from the file, its description from the module's first paragraph, defaults in --help."""
    return argparse.ArgumentParser(
        prog=f"servebench bench {Path(module_file).stem.replace('_', '-')}",
        description=(doc or "").split("\n\n")[0],
        formatter_class=_DefaultsHelpFormatter,
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-dir and --payloads, for the benchmarks that load the study's model in-process."""
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("results/model/synthetic-roberta-base"),
        metavar="DIR",
        help="the model stage's output folder (every runtime's export in it)",
    )
    parser.add_argument(
        "--payloads",
        type=Path,
        default=Path("results/data/payloads.csv"),
        metavar="CSV",
        help="the study's request texts",
    )
