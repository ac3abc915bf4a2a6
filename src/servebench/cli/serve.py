"""`servebench serve`: one variant's Bento on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.cpus import check_cpus, parse_cpus
from servebench.errors import UserError
from servebench.layout import Layout


def _serve(args: argparse.Namespace) -> int:
    from servebench.config import load_config
    from servebench.deploy.local import ServerStartError, Terminated, local_server
    from servebench.deploy.monitor import monitor

    config = load_config(*args.configfile)
    if args.variant not in config["variants"]:
        known = ", ".join(sorted(config["variants"]))
        raise UserError(f"no variant named {args.variant!r} (known: {known})")
    record_path = args.bento_json or Layout.of(config).bento_record(args.variant)
    if not record_path.is_file():
        raise UserError(
            f"{record_path}: no Bento built for variant {args.variant!r}; build it with "
            f"`snakemake --cores 2 {record_path}`"
        )
    record = json.loads(record_path.read_text(encoding="utf-8"))
    try:
        cpus = parse_cpus(args.cpus) if args.cpus else list(config["cpus"]["server"])
        cpus = check_cpus(cpus)
    except ValueError as error:
        raise UserError(str(error)) from None
    log_path = args.log or Path(config["results_dir"], "serve", f"{args.variant}.log")
    ready_timeout_s = float(config["deploy"]["ready_timeout_s"])
    print(f"starting {record['tag']} on cores {cpus} (log: {log_path}) ...", flush=True)
    try:
        with local_server(
            record["tag"],
            bentoml_home=record["bentoml_home"],
            log_path=log_path,
            cpus=cpus,
            port=args.port,
            ready_timeout_s=ready_timeout_s,
        ) as server:
            with contextlib.ExitStack() as stack:
                if args.monitor:
                    stack.enter_context(monitor(server, args.monitor))
                print(
                    f"variant {args.variant} ready at {server.url}\n"
                    f"  curl -X POST {server.url}/classify -H 'Content-Type: application/json' "
                    '-d \'{"text": "what a lovely day"}\'\n'
                    "Ctrl-C stops it.",
                    flush=True,
                )
                while server.process.poll() is None:
                    time.sleep(0.5)
                raise UserError(
                    f"the server exited with code {server.process.returncode}; last lines of "
                    f"{log_path}:\n{server.log_tail()}"
                )
    except ServerStartError as error:
        raise UserError(str(error)) from None
    except Terminated:
        print("servebench serve: terminated, server stopped", file=sys.stderr)
        return 143


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve one variant's Bento locally (127.0.0.1, pinned to the server cores) "
        "until Ctrl-C",
        description="Serve one variant's Bento (built by the workflow) on 127.0.0.1, pinned to "
        "the server cores, until Ctrl-C.",
    )
    parser.add_argument(
        "--variant", required=True, metavar="NAME", help="variant name from the config"
    )
    parser.add_argument(
        "--port", type=int, default=None, metavar="PORT", help="port (default: a free one)"
    )
    parser.add_argument(
        "--cpus",
        default=None,
        metavar="CPUS",
        help="server cores, e.g. 0 or 0-1 (default: config cpus.server)",
    )
    add_configfile_option(parser)
    parser.add_argument(
        "--bento-json",
        type=Path,
        default=None,
        metavar="FILE",
        help="the Bento record (default: <results_dir>/bentos/<variant>.json)",
    )
    parser.add_argument("--log", type=Path, default=None, metavar="FILE", help="server log file")
    parser.add_argument(
        "--monitor",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for server_metrics.csv and resources.csv, sampled once a second",
    )
    parser.set_defaults(func=_serve)
