"""Rule study_status: results/status.json (servebench.analysis.status)."""

import logging

from servebench.analysis.status import write_study_status

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
status = write_study_status(sm.config)
for problem in status["problems"]:
    logging.warning("%s", problem)
