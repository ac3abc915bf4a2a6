"""Rule loadtest: one run of the matrix (servebench.jobs.scenario; by hand: servebench job scenario)."""

import logging
from pathlib import Path

from servebench.jobs.scenario import run_scenario
from servebench.matrix import RunSpec

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
spec = RunSpec(
    sm.wildcards.target, sm.wildcards.variant, sm.wildcards.scenario, int(sm.wildcards.rep)
)
out_dir = Path(sm.output.meta).parent
summary = run_scenario(
    sm.config, spec, sm.input.bento or None, sm.input.payloads, out_dir, sm.input.capacity or None
)
state = "valid" if summary.valid else f"INVALID {summary.invalid_reasons}"
logging.info("run %s finished: %s", out_dir, state)
