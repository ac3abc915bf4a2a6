"""Conventions of the `servebench` command line, over every subcommand: a description each, one
spelling of the configuration option, numbers with their unit in the metavar, --version, the
defaults of `loadtest`."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from servebench import __version__
from servebench.cli import build_parser


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


ALL = list(subcommands(build_parser()))


def test_every_subcommand_has_a_description():
    missing = [" ".join(path) for path, parser in ALL if not (parser.description or "").strip()]
    assert not missing, f"no description: {missing}"


def test_the_configuration_option_is_spelled_configfile_everywhere():
    for path, parser in ALL:
        for action in parser._actions:
            for option in action.option_strings:
                assert option != "--config" and not option.startswith("--config-"), (path, option)
                if option == "--configfile":
                    assert action.metavar == "FILE" and isinstance(action.default, list), path


def test_numbers_say_their_unit_in_the_metavar():
    """Every option that takes a number names what it is (SECONDS, MS, REQ_PER_S, N ...) rather
    than leaving argparse's upper-cased destination."""
    for path, parser in ALL:
        for action in parser._actions:
            if action.option_strings and action.type in (int, float) and not action.choices:
                assert action.metavar, (path, action.option_strings)


@pytest.mark.parametrize(
    ("option", "metavar"),
    [
        ("--rate", "REQ_PER_S"),
        ("--duration", "SECONDS"),
        ("--warmup", "SECONDS"),
        ("--timeout", "SECONDS"),
        ("--max-send-lag-ms", "MS"),
        ("--header", "'NAME: VALUE'"),
        ("--slo", "'METRIC<=NUMBER'"),
    ],
)
def test_loadtest_metavars(option, metavar):
    parser = dict(ALL)[("loadtest",)]
    (action,) = [a for a in parser._actions if option in a.option_strings]
    assert action.metavar == metavar


def test_loadtest_defaults_the_arrival_law_and_the_seed():
    args = build_parser().parse_args(["loadtest", "--host", "http://h", "--out", "o"])
    assert args.arrival == "exponential"
    assert args.seed is None  # the configuration's seed (cli/loadtest.py)
    assert args.headers == [] and args.slo == []


def test_version(servebench_exe):
    result = subprocess.run([servebench_exe, "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"servebench {__version__}"
