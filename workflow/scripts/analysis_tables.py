"""results/tables/*.csv from the runs, the calibration and the config; see servebench.stats.

Outside Snakemake: python workflow/scripts/analysis_tables.py [--configfile FILE ...] [OUT_DIR]
"""

import argparse
import logging
from pathlib import Path

from servebench.config import load_config
from servebench.experiment import run_matrix
from servebench.stats import build_tables, write_tables


def main(config, out_dir) -> None:
    results_dir = Path(config["results_dir"])
    tables = build_tables(config, run_matrix(config), results_dir)
    for path in write_tables(tables, out_dir).values():
        logging.info("wrote %s", path)
    runs = tables["runs"]
    logging.info("%d runs, %d valid", len(runs), int(runs["valid"].sum()) if len(runs) else 0)
    for problem in tables["problems"]["problem"]:
        logging.warning("%s", problem)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
        main(sm.config, Path(sm.output.summary).parent)
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("out_dir", nargs="?", help="default: <results_dir>/tables")
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        config = load_config(*args.configfile)
        main(config, args.out_dir or Path(config["results_dir"], "tables"))
