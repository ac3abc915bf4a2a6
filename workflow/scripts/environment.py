"""Record the machine and software environment of this workflow run."""

import logging
import sys

from servebench.provenance import environment, write_json


def main(output_path: str, config: dict) -> None:
    env = environment()
    env["config_seed"] = config.get("seed")
    write_json(output_path, env)
    logging.info("environment written to %s: %s", output_path, env["cpu"]["model"])


if __name__ == "__main__":
    if "snakemake" in globals():
        logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
        main(snakemake.output[0], snakemake.config)  # noqa: F821
    else:
        logging.basicConfig(level=logging.INFO)
        main(sys.argv[1], {})
