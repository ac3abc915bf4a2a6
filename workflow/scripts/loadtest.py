"""One run of the matrix: deploy, load, tear down; see servebench.runs.run_scenario."""

import argparse
import logging
from pathlib import Path

from servebench.config import load_config
from servebench.experiment import RunSpec
from servebench.runs import run_scenario


def main(config, spec, bento_record, payloads, out_dir, capacity=None) -> None:
    summary = run_scenario(config, spec, bento_record, payloads, out_dir, capacity)
    state = "valid" if summary.get("valid") else f"INVALID {summary.get('invalid_reasons')}"
    logging.info("run %s finished: %s", out_dir, state)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(
            filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s"
        )
        spec = RunSpec(
            sm.wildcards.target,
            sm.wildcards.variant,
            sm.wildcards.scenario,
            int(sm.wildcards.rep),
        )
        main(
            sm.config,
            spec,
            sm.input.bento,
            sm.input.payloads,
            Path(sm.output.meta).parent,
            sm.input.capacity or None,
        )
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("variant")
        parser.add_argument("scenario")
        parser.add_argument("repetition", type=int)
        parser.add_argument("bento_record")
        parser.add_argument("payloads")
        parser.add_argument("out_dir")
        parser.add_argument("--capacity", help="capacity.json of the reference variant")
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        config = load_config(*args.configfile)
        spec = RunSpec(config["deploy"]["target"], args.variant, args.scenario, args.repetition)
        main(config, spec, args.bento_record, args.payloads, args.out_dir, args.capacity)
