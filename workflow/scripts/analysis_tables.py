"""Rule tables: results/tables/*.csv (servebench.analysis.tables; by hand: servebench report
render)."""

import logging
from pathlib import Path

from servebench.analysis.tables import write_study_tables

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
tables = write_study_tables(sm.config, Path(sm.output.summary).parent)
runs = tables["runs"]
logging.info("%d runs, %d valid", len(runs), int(runs["valid"].sum()) if len(runs) else 0)
for problem in tables["problems"]["problem"]:
    logging.warning("%s", problem)
