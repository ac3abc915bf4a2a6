"""`servebench k3s-render`: the committed K3s overlays, rendered and validated offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError
from servebench.settings import K3sTarget


def _render(args: argparse.Namespace) -> int:
    from servebench.config import load_config
    from servebench.deploy.k3s import kustomize
    from servebench.deploy.k3s.manifests import (
        OVERLAYS_DIR,
        OverlayError,
        committed_image_tags,
        validation_errors,
        write_committed_overlays,
    )
    from servebench.layout import Layout

    config = load_config(*args.configfile)
    variants = args.variant or config["experiment"]["variants"]
    unknown = [name for name in variants if name not in config["variants"]]
    if unknown:
        raise UserError(f"no variant named {', '.join(map(repr, unknown))}")
    targets = {name: K3sTarget.of(config, name) for name in variants}
    # The images' tags: the versions (content hashes) of the variants' built Bentos.
    bentos_dir = args.bentos or Layout.of(config).path("bentos")
    try:
        tags = committed_image_tags(bentos_dir, variants)
    except OverlayError as error:
        raise UserError(str(error)) from None
    written = write_committed_overlays(targets, tags, args.out or OVERLAYS_DIR)
    failed = False
    for directory in written:
        errors = validation_errors(kustomize.render(directory))
        state = "valid" if not errors else "INVALID:\n  " + "\n  ".join(errors)
        failed = failed or bool(errors)
        print(f"{directory}: {state}")
    if failed:
        raise UserError("some rendered manifests do not validate")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "k3s-render",
        help="write k3s/overlays/<variant>/ from the config and validate what they render to",
        description="Write the kustomize overlay of each variant (k3s/overlays/<variant>/) from "
        "the configuration and validate what it renders to (kubernetes-validate --strict).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="overlays folder (default: k3s/overlays)",
    )
    parser.add_argument(
        "--bentos",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the Bento records whose versions tag the images "
        "(default: <results_dir>/bentos)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="variant, repeatable (default: the experiment's)",
    )
    add_configfile_option(parser)
    parser.set_defaults(func=_render)
