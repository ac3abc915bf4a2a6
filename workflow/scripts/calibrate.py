"""Rule calibrate: one variant's capacity (servebench.jobs.calibrate; by hand: servebench job
calibrate)."""

import logging
from pathlib import Path

from servebench.jobs.calibrate import calibrate

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
out_dir = Path(sm.output.capacity).parent
# No Bento record on the external target (an empty input).
bento = sm.input.bento or None
result = calibrate(sm.config, sm.wildcards.variant, bento, sm.input.payloads, out_dir)
logging.info("capacity of %s: %s req/s", sm.wildcards.variant, result["capacity_rps"])
