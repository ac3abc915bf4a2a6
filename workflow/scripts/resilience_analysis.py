"""Rule resilience_analysis: results/tables/resilience.csv and a timeline per fault
(servebench.analysis.resilience; by hand: servebench report render)."""

import logging
from pathlib import Path

from servebench.analysis.resilience import resilience_outputs

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
logging.getLogger("fontTools").setLevel(logging.WARNING)
written = resilience_outputs(
    sm.config, sm.output.table, Path(sm.output.table).parent.parent / "figures"
)
logging.info("wrote %s", written["table"])
for fault, paths in written["figures"].items():
    logging.info("%s: %s", fault, ", ".join(paths))
