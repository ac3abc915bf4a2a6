"""Build the Bento of one variant; see servebench.bento.build_bento.

Outside Snakemake: python workflow/scripts/build_bento.py VARIANT RUNTIME_DIR OUT_JSON
[--configfile FILE ...] (the config as the workflow sees it).
"""

import argparse
import logging
from pathlib import Path

from servebench.bento import build_bento
from servebench.config import load_config


def main(config, variant, runtime_dir, output_json, log=None) -> None:
    record = build_bento(config, variant, runtime_dir, output_json, log=log)
    logging.info(
        "variant %s: Bento %s (%d bytes; model %s, %d bytes)%s",
        variant,
        record["tag"],
        record["bento_size_bytes"],
        record["model_tag"],
        record["model_size_bytes"],
        " (reused)" if record["reused_existing_bento"] else "",
    )


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(
            filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s"
        )
        main(
            sm.config,
            sm.wildcards.variant,
            Path(sm.input.runtime).parent,
            sm.output[0],
            log=sm.log[0],
        )
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("variant")
        parser.add_argument("runtime_dir", type=Path)
        parser.add_argument("output_json", type=Path)
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        main(load_config(*args.configfile), args.variant, args.runtime_dir, args.output_json)
