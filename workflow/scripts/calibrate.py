"""Calibrate one variant's capacity (stepped open-loop ramp); see servebench.runs.calibrate."""

import argparse
import logging
from pathlib import Path

from servebench.config import load_config
from servebench.runs import calibrate


def main(config, variant, bento_record, payloads, out_dir) -> None:
    result = calibrate(config, variant, bento_record, payloads, out_dir)
    logging.info("capacity of %s: %s req/s", variant, result["capacity_rps"])


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(
            filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s"
        )
        main(
            sm.config,
            sm.wildcards.variant,
            sm.input.bento,
            sm.input.payloads,
            Path(sm.output.capacity).parent,
        )
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("variant")
        parser.add_argument("bento_record")
        parser.add_argument("payloads")
        parser.add_argument("out_dir")
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        main(
            load_config(*args.configfile),
            args.variant,
            args.bento_record,
            args.payloads,
            args.out_dir,
        )
