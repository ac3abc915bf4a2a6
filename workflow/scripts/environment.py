"""Rule environment: the machine and software environment of this workflow run."""

import logging

from servebench.provenance import environment, write_json

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO)
env = environment()
env["config_seed"] = sm.config["seed"]
write_json(sm.output[0], env)
logging.info("environment written to %s: %s", sm.output[0], env["cpu"]["model"])
