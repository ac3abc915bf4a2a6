"""Rule tune: the tuning stage (servebench.jobs.tune; by hand: servebench tune)."""

import logging
from pathlib import Path

from servebench.jobs.tune import tune

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
runtime_dirs = {Path(path).parent.name: Path(path).parent for path in sm.input.runtimes}
tuned = tune(
    sm.config,
    runtime_dirs,
    sm.input.payloads,
    Path(sm.output.tuned).parent,
    log_path=sm.log[0],
)
logging.info("tuned %s: %s", tuned["variant"], tuned["configuration"])
