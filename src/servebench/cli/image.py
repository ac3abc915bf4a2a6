"""`servebench image build`: one Bento's container image, built offline as the workflow's `image`
rule builds it (servebench.deploy.images: dockerd, the Debian base, the runtime's wheels, the
image), tagged `[<registry>/]<repository>/<Bento name>:<Bento version>`.

    servebench image build --variant optimized [--configfile FILE]
    servebench image build --bento-json results/bentos/optimized.json --results-dir results

The first form takes the configuration as the workflow does (the Bento record, results_dir and
deploy.k3s.image_repository/image_registry from it); the second names the Bento record and the
folder of the image records itself (the K3s target's containerize step runs it). It prints one
line: the record, the image and whether it was built or reused. Root is needed only to start
dockerd or to debootstrap the base the first time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from servebench.cli import add_configfile_option
from servebench.errors import UserError


def _build(args: argparse.Namespace) -> int:
    from servebench.deploy.images import IMAGE_REPOSITORY, ensure_bento_image
    from servebench.layout import Layout

    if args.variant:
        from servebench.config import load_config

        config = load_config(*args.configfile)
        if args.variant not in config["variants"]:
            raise UserError(
                f"no variant named {args.variant!r} (known: {', '.join(config['variants'])})"
            )
        layout = Layout.of(config)
        bento_json = layout.bento_record(args.variant)
        results_dir = layout.results_dir
        k3s = config["deploy"]["k3s"]
        repository = args.repository or k3s["image_repository"]
        registry = k3s["image_registry"] if args.registry is None else args.registry
    else:
        if args.results_dir is None:
            raise UserError("--bento-json needs --results-dir (where the image records go)")
        bento_json, results_dir = args.bento_json, args.results_dir
        repository = args.repository or IMAGE_REPOSITORY
        registry = args.registry or ""
    try:
        record = json.loads(Path(bento_json).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{bento_json}: no Bento record (make it with `snakemake --cores 2 {bento_json}`)"
        ) from None
    except ValueError as error:
        raise UserError(f"{bento_json}: not a Bento record ({error})") from None
    image = ensure_bento_image(record, results_dir, repository=repository, registry=registry)
    where = Layout(results_dir).image_record(record["variant"])
    how = "reused" if image["reused"] else f"built in {image['build_s']} s"
    print(f"{where}: {image['image']} ({image['size_bytes']} bytes, {how})")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    image = subparsers.add_parser(
        "image",
        help="build a Bento's container image offline (as the workflow's image rule)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="build (or reuse) one Bento's image",
        description="Build (or reuse, when up to date) one Bento's container image offline: "
        "dockerd, the Debian base image, the runtime's wheels, `docker build --network none`; "
        "writes <results>/images/<variant>.json.",
    )
    which = build.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", help="variant name (under `variants`): its Bento record")
    which.add_argument("--bento-json", type=Path, help="a Bento record (results/bentos/X.json)")
    build.add_argument(
        "--results-dir", type=Path, help="with --bento-json: where images/ and wheelhouse/ go"
    )
    build.add_argument("--repository", help="image repository (default: deploy.k3s's)")
    build.add_argument("--registry", help="registry host prefix (default: deploy.k3s's)")
    add_configfile_option(build)
    build.set_defaults(func=_build)
